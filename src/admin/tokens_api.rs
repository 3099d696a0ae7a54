//! `GET|POST /tokens`, `DELETE /tokens/{name}`: managing named, scoped
//! tokens ([`super::tokens`]) over HTTP. Needs scope `admin`.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::tokens::TokenError;
use super::{error_response, json_response, AdminState};
use crate::serve::body::Body;

fn error(e: TokenError) -> Response<Body> {
    let status = match &e {
        TokenError::Invalid(_) => StatusCode::BAD_REQUEST,
        TokenError::Conflict(_) => StatusCode::CONFLICT,
        TokenError::NotFound(_) => StatusCode::NOT_FOUND,
        TokenError::Other(e) => {
            tracing::error!(error = format!("{e:#}"), "token operation failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error_response(status, &e.to_string())
}

fn no_store() -> Response<Body> {
    error_response(StatusCode::NOT_FOUND, "this server keeps no token store")
}

/// `GET /tokens`: every token's name, scopes, times; never a hash.
pub fn list(state: &AdminState) -> Response<Body> {
    let Some(store) = state.auth.tokens() else {
        return no_store();
    };
    let tokens: Vec<Value> = store.list().iter().map(|r| r.public()).collect();
    json_response(StatusCode::OK, &json!({ "tokens": tokens }))
}

/// `POST /tokens` with `{"name", "scopes": [...], "expiresIn": "30d"}`:
/// 201 with the token, shown this once.
pub async fn create(state: &AdminState, body: &Value) -> Response<Body> {
    let Some(store) = state.auth.tokens() else {
        return no_store();
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "body must be JSON like {\"name\": \"ci-web\", \"scopes\": [\"deploy:web\"], \"expiresIn\": \"90d\"}",
        );
    };
    let scopes: Option<Vec<String>> = match body.get("scopes") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => None,
    };
    let Some(scopes) = scopes else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "scopes must be a list of strings: admin, read, deploy:* or deploy:<service>",
        );
    };
    let expires_in = match body.get("expiresIn") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match humantime::parse_duration(text) {
            Ok(d) if d.as_secs() <= 100 * 365 * 86400 => Some(d),
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!(
                    "expiresIn {text:?}: expected a duration like 90d or 12h (at most 100 years)"
                ),
                )
            }
        },
        Some(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "expiresIn must be a string like \"90d\"",
            )
        }
    };
    let name = name.to_string();
    match tokio::task::spawn_blocking(move || store.create(&name, &scopes, expires_in)).await {
        Ok(Ok((token, record))) => {
            let mut answer = record.public();
            answer["token"] = Value::String(token);
            json_response(StatusCode::CREATED, &answer)
        }
        Ok(Err(e)) => error(e),
        Err(e) => error(TokenError::Other(anyhow::anyhow!("{e}"))),
    }
}

/// `DELETE /tokens/{name}`: 204; refused at once everywhere after.
pub async fn revoke(state: &AdminState, name: &str) -> Response<Body> {
    let Some(store) = state.auth.tokens() else {
        return no_store();
    };
    let name = name.to_string();
    match tokio::task::spawn_blocking(move || store.revoke(&name)).await {
        Ok(Ok(())) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(crate::serve::body::empty())
            .unwrap_or_else(|_| Response::new(crate::serve::body::empty())),
        Ok(Err(e)) => error(e),
        Err(e) => error(TokenError::Other(anyhow::anyhow!("{e}"))),
    }
}
