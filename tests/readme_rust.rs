//! The Rust example of README.md ("Using it from Rust"), run as written: the code between the
//! markers below is the README's block, and `readme_block_is_this_code` checks that the two
//! are the same text, so that they cannot drift apart.

// README begin
use era::{DeltaLearning, DeltaOptimizer, GaussianConfig, GaussianHead};
use ndarray::{ArrayD, IxDyn};

fn main() -> era::Result<()> {
    let mut cfg = GaussianConfig::new(6, -6.0); // H0 = -D for the bounded policy (docs/settings.md)
    cfg.delta = 0.853 * 6.0; // the recipe: SGD at 0.5 from 0.853 * D
    cfg.delta_learning = DeltaLearning { optimizer: DeltaOptimizer::Sgd, lr: 0.5, ..Default::default() };
    let head = GaussianHead::new(cfg)?;
    let z = ArrayD::<f32>::zeros(IxDyn(&[4, 6]));
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[4, 6]));
    head.forward(z.view(), out.view_mut())?; // ndarray views of any rank and strides
    head.update_delta(-5.5)?; // once per training step: the bounded policy's batch-mean entropy
    Ok(())
}
// README end

#[test]
fn readme_example_runs() {
    main().expect("the README's Rust example");
}

#[test]
fn readme_block_is_this_code() {
    let this = include_str!("readme_rust.rs");
    let begin = this.find("// README begin\n").unwrap() + "// README begin\n".len();
    let end = this.find("// README end\n").unwrap();
    let code = &this[begin..end];
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("## Using it from Rust").expect("the README's Rust section")..];
    let start = section.find("```rust\n").expect("a ```rust block") + "```rust\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    assert_eq!(block, code, "README.md's Rust block and tests/readme_rust.rs differ");
}
