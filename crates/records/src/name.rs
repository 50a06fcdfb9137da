//! The naming rule shared by functions, entities and entity operations.

/// 1-128 ASCII letters, digits, `_`, `-` or `.`: function and entity
/// operation names, which appear in URLs and journals.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
