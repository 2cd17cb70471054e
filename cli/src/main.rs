//! The `strata` command.

fn main() {
    println!("strata: not yet implemented");
}
