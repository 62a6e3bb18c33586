//! The Kubernetes executor (work in progress in this commit: the crate exists so the
//! workspace layout is fixed; the implementation follows).
