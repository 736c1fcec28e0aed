//! docs/PROTOCOL.md §10 is the library's one error table (`pointsledger::errors`), printed as
//! Markdown; this test fails when the two differ. `UPDATE_DOCS=1 cargo test --test error_table`
//! writes the table into the doc.

use pointsledger::errors::markdown_tables;

const BEGIN: &str = "<!-- error table: generated from src/errors.rs -->\n";
const END: &str = "<!-- end of error table -->";

#[test]
fn protocol_section_10_is_the_error_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("read docs/PROTOCOL.md");
    let start = doc.find(BEGIN).expect("the table's opening marker") + BEGIN.len();
    let end = start + doc[start..].find(END).expect("the table's closing marker");
    let want = markdown_tables();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{want}{}", &doc[..start], &doc[end..]);
        std::fs::write(path, updated).expect("write docs/PROTOCOL.md");
        return;
    }
    assert!(
        doc[start..end] == want,
        "docs/PROTOCOL.md §10 differs from src/errors.rs; run \
         `UPDATE_DOCS=1 cargo test --test error_table` and review the diff. The table is:\n{want}"
    );
}
