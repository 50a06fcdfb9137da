//! Version 3: an incompatible change (another first activity).

const VERSION: &str = "v3";
const FIRST_STEP: &str = "StepC";

include!("../../versioned-common/flow.rs");
