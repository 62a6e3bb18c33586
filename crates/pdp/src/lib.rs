//! The policy decision point: policies, inventory and evaluation.
