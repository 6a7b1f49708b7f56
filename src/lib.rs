//! Cross-crate integration tests and examples live in tests/ and examples/.
