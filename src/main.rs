//! The `spindle` command line: wiring only.
fn main() {
    println!("spindle {}", env!("CARGO_PKG_VERSION"));
}
