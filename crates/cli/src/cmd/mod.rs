//! One module per subcommand group.

pub mod approval;
pub mod audit;
pub mod caller;
pub mod decide;
pub mod demo;
pub mod keys;
pub mod project;
pub mod rollback;
pub mod run;
pub mod ticket;
pub mod token;

/// Prints why a token (identity token or ticket) is invalid, as text or JSON, and gives
/// the error exit code: one shape for `token verify` and `ticket verify`.
pub(crate) fn print_invalid(
    ctx: &crate::context::Context,
    what: &str,
    code: &str,
    reason_code: Option<agentsafe_core::ReasonCode>,
    message: &str,
) -> anyhow::Result<std::process::ExitCode> {
    if ctx.json() {
        let mut doc = serde_json::json!({ "valid": false, "reason": code, "message": message });
        if let (Some(rc), Some(obj)) = (reason_code, doc.as_object_mut()) {
            obj.insert("reason_code".into(), serde_json::to_value(rc)?);
        }
        out!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        out!("invalid {what} ({code}): {message}");
    }
    Ok(std::process::ExitCode::from(crate::exit::ERROR))
}
