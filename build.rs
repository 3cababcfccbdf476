// The migrations are embedded at compile time (`sqlx::migrate!`), which tracks the files it
// read but not the directory: without this, a new migration file does not rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
