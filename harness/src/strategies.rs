//! proptest strategies for operators' inputs (filled in below).
