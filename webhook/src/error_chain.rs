//! An error as one line of text with its causes. Client libraries put the
//! useful part in a source: reqwest's own text is only "error sending
//! request" (the cause says "connection refused" or which certificate), and
//! kube's errors carry the API server's message ("forbidden: … cannot watch
//! …") there.

/// `error` and each of its causes, joined by ": ", skipping a cause whose
/// text the line already holds.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
