//! Reports: the bench result, run cards and their Markdown/SVG, and comparisons across machines.

pub mod bench;
pub mod bench_card;
pub mod chart;
pub mod compare;
pub mod power_cap;
pub mod runcard;
pub mod runcard_rest;
pub mod snapshot;
pub mod sweep;

/// Rows of cells as text columns two spaces apart, each as wide as its widest cell (by
/// terminal width): right-aligned, but for the columns in `left`, each line after `indent`
/// and without trailing spaces.
pub fn align_columns(rows: &[Vec<String>], left: &[usize], indent: &str) -> String {
    use unicode_width::UnicodeWidthStr;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.width())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut o = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - cell.width());
            let gap = if i == 0 { "" } else { "  " };
            if left.contains(&i) {
                line.push_str(&format!("{gap}{cell}{pad}"));
            } else {
                line.push_str(&format!("{gap}{pad}{cell}"));
            }
        }
        o.push_str(line.trim_end());
        o.push('\n');
    }
    o
}
