//! A request for a decision: which action, on which target, by whom, with which params.

use serde::{Deserialize, Serialize};

use crate::Caller;

/// Action parameters: a JSON object. Keys are kept sorted.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// "May `caller` run `action` on `target` with `params`?"
///
/// The time of evaluation is deliberately absent: the decision point takes it
/// from its own clock, so a request cannot choose it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The action name from the registry, such as `scale-deployment`.
    pub action: String,
    /// The target id from the inventory, such as `prod/payments`.
    pub target: String,
    /// Who is asking.
    pub caller: Caller,
    /// Parameters for the action; target-bound params may be omitted and are filled from the target.
    #[serde(default)]
    pub params: Params,
    /// An external change-ticket id (such as `CHG-1234`), when the request carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_ticket: Option<String>,
    /// A correlation id chosen by the caller, recorded with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The W3C trace id of the caller's trace, recorded with the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}
