//! What `compare` checks before it measures: that each model's request
//! bodies are JSON, and that an answer has the shape its route promises (a
//! chat answer exactly one choice with text, an embeddings answer one
//! vector of numbers per input: the gateway does not check counts).
//!
//! Called by `compare` for each path before its load; no measurement here.

use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::load::request::read_bodies;
use crate::load::tls::Verification;
use crate::server::stack::StackModel;

/// The model's request bodies, each JSON (checked before any server is touched).
pub fn check_bodies(model: &StackModel) -> anyhow::Result<Vec<Vec<u8>>> {
    let bodies =
        read_bodies(&model.body).with_context(|| format!("model {}: reading {}", model.name, model.body.display()))?;
    for body in &bodies {
        serde_json::from_slice::<serde_json::Value>(body)
            .with_context(|| format!("model {}: {} is not JSON", model.name, model.body.display()))?;
    }
    Ok(bodies)
}

/// One request, and a look at the answer's shape.
pub async fn check_route(
    url: &str,
    headers: &[(String, String)],
    verification: &Verification,
    model: &StackModel,
    body: &[u8],
) -> anyhow::Result<()> {
    let client = crate::server::tls::http_client(verification, Duration::from_secs(60))?;
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "POST {url} answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
    }
    let sent: serde_json::Value =
        serde_json::from_slice(body).with_context(|| format!("{}: not JSON", model.body.display()))?;
    let answer: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("POST {url}: the answer is not JSON"))?;
    answer_problem(&model.route, &sent, &answer).map_or(Ok(()), |problem| bail!("POST {url}: {problem}"))
}

/// What is wrong with an answer to `sent` on `route`, if anything.
pub fn answer_problem(route: &str, sent: &serde_json::Value, answer: &serde_json::Value) -> Option<String> {
    if route == "embeddings" {
        let inputs = match &sent["input"] {
            serde_json::Value::String(_) => 1,
            serde_json::Value::Array(items) => items.len(),
            _ => return Some("the request has no input".into()),
        };
        let Some(data) = answer["data"].as_array() else {
            return Some("the answer has no data array".into());
        };
        if data.len() != inputs {
            return Some(format!("{} embeddings for {inputs} inputs", data.len()));
        }
        let empty = data.iter().any(|d| {
            d["embedding"]
                .as_array()
                .is_none_or(|v| v.is_empty() || !v.iter().all(|x| x.is_number()))
        });
        return empty.then(|| "an embedding is empty or not numbers".into());
    }
    let Some(choices) = answer["choices"].as_array() else {
        return Some("the answer has no choices".into());
    };
    if choices.len() != 1 {
        return Some(format!("{} choices, not 1", choices.len()));
    }
    choices[0]["message"]["content"]
        .as_str()
        .is_none()
        .then(|| "the choice has no text content".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_checked_for_their_shape_and_counts() {
        let one = json!({"input": "a"});
        let two = json!({"input": ["a", "b"]});
        let answer = json!({"data": [{"embedding": [0.1, 0.2]}]});
        assert_eq!(answer_problem("embeddings", &one, &answer), None);
        assert_eq!(
            answer_problem("embeddings", &two, &answer).as_deref(),
            Some("1 embeddings for 2 inputs")
        );
        let chat = json!({"messages": []});
        assert_eq!(
            answer_problem(
                "chat/completions",
                &chat,
                &json!({"choices": [{"message": {"content": "hi"}}]})
            ),
            None
        );
        assert!(answer_problem("chat/completions", &chat, &json!({"choices": []})).is_some());
    }
}
