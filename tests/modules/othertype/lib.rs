//! A test module with a data type of its own ("othertype"), so that rlock's tests can store a
//! key of another module's type: `OTHERTYPE.SET key text` and `OTHERTYPE.GET key`.

use std::os::raw::c_void;

use redis_module::native_types::RedisType;
use redis_module::{raw, redis_module, Context, NextArg, RedisResult, RedisString};

struct Text(String);

static OTHER_TYPE: RedisType = RedisType::new(
    "othertype",
    0,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: None,
        rdb_save: None,
        aof_rewrite: None,
        free: Some(free),
        mem_usage: None,
        digest: None,
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

unsafe extern "C" fn free(value: *mut c_void) {
    // SAFETY: every value of this type is a Box<Text> handed over by set_value.
    drop(unsafe { Box::from_raw(value.cast::<Text>()) });
}

fn set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let (key, text) = (args.next_arg()?, args.next_string()?);
    ctx.open_key_writable(&key)
        .set_value(&OTHER_TYPE, Text(text))?;
    Ok(redis_module::RedisValue::SimpleStringStatic("OK"))
}

fn get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let mut args = args.into_iter().skip(1);
    let key = ctx.open_key(&args.next_arg()?);
    Ok(match key.get_value::<Text>(&OTHER_TYPE)? {
        Some(text) => text.0.as_str().into(),
        None => ().into(),
    })
}

redis_module! {
    name: "othertype",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [OTHER_TYPE],
    commands: [
        ["othertype.set", set, "write", 1, 1, 1, ""],
        ["othertype.get", get, "readonly", 1, 1, 1, ""],
    ],
}
