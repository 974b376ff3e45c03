//! Aligned text tables: first column left-aligned, the others right-aligned.

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let widths = self.column_widths();
        println!("{}", render(&self.headers, &widths));
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        println!("{}", rule.join("  "));
        for row in &self.rows {
            println!("{}", render(row, &widths));
        }
    }

    fn column_widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                if index < widths.len() {
                    widths[index] = widths[index].max(cell.chars().count());
                }
            }
        }
        widths
    }
}

fn render(cells: &[String], widths: &[usize]) -> String {
    let columns: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(index, &width)| {
            let cell = cells.get(index).map_or("", String::as_str);
            if index == 0 {
                format!("{cell:<width$}")
            } else {
                format!("{cell:>width$}")
            }
        })
        .collect();
    columns.join("  ").trim_end().to_string()
}

/// A section heading.
pub fn heading(title: &str) {
    println!("\n## {title}\n");
}
