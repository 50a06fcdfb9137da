//! Version 2: a compatible change (same calls, another output).

const VERSION: &str = "v2";
const FIRST_STEP: &str = "StepA";

include!("../../versioned-common/flow.rs");
