//! Version 1 of the versioned app.

const VERSION: &str = "v1";
const FIRST_STEP: &str = "StepA";

include!("../../versioned-common/flow.rs");
