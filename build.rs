//! Generates the list of module API calls rlock makes (every `rm!(RedisModule_<name>)` in
//! `src/`), which `glue::api::missing_required` checks at load: a server lacking one refuses
//! the module at MODULE LOAD instead of failing later, and the list cannot drift from the code.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut calls = BTreeSet::new();
    collect(Path::new("src"), &mut calls);
    let mut out = String::from(
        "/// Every module API call made through `rm!`, with whether this server has it.\n\
         pub const REQUIRED: &[ApiCall] = &[\n",
    );
    for name in &calls {
        out += &format!(
            "    (\"{name}\", || unsafe {{ {{ redis_module::raw::RedisModule_{name} }}.is_some() }}),\n"
        );
    }
    out += "];\n";
    let dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(Path::new(&dir).join("required_api.rs"), out).expect("write required_api.rs");
}

/// The names after `rm!(RedisModule_` in every `.rs` file under `dir`.
fn collect(dir: &Path, calls: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, calls);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = fs::read_to_string(&path).unwrap_or_default();
            for (at, _) in text.match_indices("rm!(") {
                let rest = text[at + 4..].trim_start();
                if let Some(call) = rest.strip_prefix("RedisModule_") {
                    let name: String = call
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        calls.insert(name);
                    }
                }
            }
        }
    }
}
