//! Action definitions loaded from `actions/*.toml`, and parameter validation.
