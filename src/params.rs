//! The one parameter layer (spec 2.1 and 2.4), shared by every endpoint.
//!
//! `ApiRequest` is an actix extractor that reads the query string and the JSON body into one
//! set of parameters and resolves the session, enforcing the protocol rules before a handler
//! runs: a key given twice (in the query, in the body, or once in each) is REPEATED_PARAMETERS;
//! a body over the configured limit is refused; a body that is not a JSON object is FAILED; a
//! session ID given more than once is REPEATED_PARAMETERS, and an unknown or expired one is
//! INVALID_SESSION_ID. Handlers then read typed values through `Params`, which answers
//! INCOMPLETE_PARAMETERS (with `missing`) and INVALID_PARAMETER_TYPE (with `parameter`).
//! Nothing here writes: a request refused here has changed nothing.

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use crate::chat::sessions::resolve;
use crate::chat::sessions::Session;
use crate::chat::Chat;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::perms::Requester;

/// The name of the session parameter in the query and the body.
const SESSION_PARAM: &str = "sessionID";
/// The session header (header names are case-insensitive).
const SESSION_HEADER: &str = "x-session-id";

/// A session ID a header carries, with the user it must belong to (Resonite's `res` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSession {
    pub id: String,
    /// `Authorization: res <userID>:<sessionID>` names the user; the session must be theirs.
    pub user: Option<String>,
}

/// The session IDs in a request's headers: every `X-Session-ID`, and `Authorization: Bearer
/// <sessionID>` or `Authorization: res <userID>:<sessionID>` (extensions; the scheme is
/// case-insensitive). Other `Authorization` schemes carry no session. A header that is not
/// text, or a malformed `Bearer`/`res` value, is INVALID_SESSION_ID.
pub fn session_headers(
    headers: &actix_web::http::header::HeaderMap,
) -> ApiResult<Vec<HeaderSession>> {
    let mut found = Vec::new();
    for raw in headers.get_all(SESSION_HEADER) {
        let id = raw.to_str().map_err(|_| ApiError::invalid_session())?;
        found.push(HeaderSession {
            id: id.to_owned(),
            user: None,
        });
    }
    for raw in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = raw.to_str() else {
            continue;
        };
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(ApiError::invalid_session());
            }
            found.push(HeaderSession {
                id: rest.to_owned(),
                user: None,
            });
        } else if scheme.eq_ignore_ascii_case("res") {
            match rest.split_once(':') {
                Some((user, id)) if !user.is_empty() && !id.is_empty() => {
                    found.push(HeaderSession {
                        id: id.to_owned(),
                        user: Some(user.to_owned()),
                    })
                }
                _ => return Err(ApiError::invalid_session()),
            }
        }
    }
    Ok(found)
}

/// The session a request names, if any: a `res` header's session must be its user's.
pub fn resolve_given(state: &Chat, given: Option<HeaderSession>) -> ApiResult<Option<Session>> {
    let Some(given) = given else {
        return Ok(None);
    };
    let session = resolve(state, given.id)?;
    // `res <userID>:<sessionID>`: a session of another user is no session.
    if given
        .user
        .is_some_and(|user| user != session.user.id.to_string())
    {
        return Err(ApiError::invalid_session());
    }
    Ok(Some(session))
}

/// Typed access to request parameters.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// Prefix for names in errors, e.g. `password.` for a nested object.
    prefix: String,
    values: Map<String, Value>,
    /// Keys that came from the query string (their values are strings to coerce).
    from_query: HashSet<String>,
}

/// A request's parameters and session, checked against the protocol rules.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    params: Params,
    session: Option<Session>,
}

impl std::ops::Deref for ApiRequest {
    type Target = Params;
    fn deref(&self) -> &Params {
        &self.params
    }
}

impl ApiRequest {
    /// The session, if a valid one was given.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The session, or NOT_ALLOWED for a request that needs a logged-in user.
    pub fn logged_in(&self) -> ApiResult<&Session> {
        self.session.as_ref().ok_or_else(ApiError::login_required)
    }

    /// Who is asking, for permission checks.
    pub fn requester(&self) -> Requester {
        match &self.session {
            Some(s) => Requester::User(s.user.id),
            None => Requester::Guest,
        }
    }

    /// The id of the logged-in user, if any.
    pub fn user_id(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.user.id)
    }

    /// Builds the request from its parts: raw query string, body bytes and session headers.
    pub fn parse(
        query: &str,
        body: &[u8],
        session_headers: &[HeaderSession],
        state: &Chat,
    ) -> ApiResult<Self> {
        let mut values = parse_query(query)?;
        let mut from_query: HashSet<String> = values.keys().cloned().collect();
        let mut body_values = parse_body(body)?;

        let mut given = Vec::new();
        if let Some(v) = values.remove(SESSION_PARAM) {
            from_query.remove(SESSION_PARAM);
            given.push(HeaderSession {
                id: v.as_str().unwrap_or_default().to_owned(),
                user: None,
            });
        }
        match body_values.remove(SESSION_PARAM) {
            Some(Value::String(id)) => given.push(HeaderSession { id, user: None }),
            Some(Value::Null) | None => {}
            Some(_) => return Err(ApiError::invalid_type(SESSION_PARAM, "a string")),
        }
        given.extend_from_slice(session_headers);
        if given.len() > 1 {
            return Err(ApiError::repeated(SESSION_PARAM));
        }

        for (key, value) in body_values {
            if values.contains_key(&key) {
                return Err(ApiError::repeated(&key));
            }
            values.insert(key, value);
        }

        let session = resolve_given(state, given.pop())?;
        Ok(Self {
            params: Params {
                prefix: String::new(),
                values,
                from_query,
            },
            session,
        })
    }
}

/// A value a client may give as a header or as a parameter (`UID` or `secretMachineId`,
/// `TOTP` or `totp`), with the name it came under; both at once is REPEATED_PARAMETERS naming
/// the parameter.
pub fn header_or_param(
    http: &actix_web::HttpRequest,
    req: &ApiRequest,
    header: &'static str,
    param: &'static str,
) -> ApiResult<Option<(String, &'static str)>> {
    let from_header = match http.headers().get(header) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid_type(header, "visible ASCII text"))?
                .to_owned(),
        ),
        None => None,
    };
    match (from_header, req.opt_string(param)?) {
        (Some(_), Some(_)) => Err(ApiError::repeated(param)),
        (Some(v), None) => Ok(Some((v, header))),
        (None, Some(v)) => Ok(Some((v, param))),
        (None, None) => Ok(None),
    }
}

fn parse_query(query: &str) -> ApiResult<Map<String, Value>> {
    let mut values = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if values.contains_key(key.as_ref()) {
            return Err(ApiError::repeated(&key));
        }
        values.insert(key.into_owned(), Value::String(value.into_owned()));
    }
    Ok(values)
}

fn parse_body(body: &[u8]) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match parse_strict_json(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(
            ApiError::new(ErrorCode::Failed, "the request body must be a JSON object")
                .status(StatusCode::BAD_REQUEST),
        ),
    }
}

/// Parses JSON, refusing an object with a duplicated key (REPEATED_PARAMETERS) and anything
/// that is not JSON (FAILED).
pub fn parse_strict_json(bytes: &[u8]) -> ApiResult<Value> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|_| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => match duplicate.into_inner() {
            Some(key) => Err(ApiError::repeated(&key)),
            None => Err(ApiError::new(
                ErrorCode::Failed,
                format!("the request body is not valid JSON: {e}"),
            )
            .status(StatusCode::BAD_REQUEST)),
        },
    }
}

/// Deserializes any JSON value, noting the first duplicated object key.
#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let message = format!("duplicate key `{key}`");
                *self.duplicate.borrow_mut() = Some(key);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

impl Params {
    /// The members of a JSON object as parameters (invocation arguments of the SignalR hub),
    /// read with the body's rules.
    pub fn from_object(values: Map<String, Value>) -> Self {
        Self {
            prefix: String::new(),
            values,
            from_query: HashSet::new(),
        }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A value that is present and not null.
    fn present(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    /// Whether the key was given at all (null included).
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// A required string.
    pub fn string(&self, key: &str) -> ApiResult<String> {
        self.opt_string(key)?
            .ok_or_else(|| ApiError::incomplete(&self.name(key)))
    }

    /// An optional string: absent and null are both `None`.
    pub fn opt_string(&self, key: &str) -> ApiResult<Option<String>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid_type(&self.name(key), "a string")),
        }
    }

    /// A string that may be explicitly null: absent is `None`, null is `Some(None)`.
    pub fn nullable_string(&self, key: &str) -> ApiResult<Option<Option<String>>> {
        match self.values.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::invalid_type(&self.name(key), "a string or null")),
        }
    }

    /// An optional boolean; from the query string it may be `true` or `false`.
    pub fn opt_bool(&self, key: &str) -> ApiResult<Option<bool>> {
        let invalid = || ApiError::invalid_type(&self.name(key), "true or false");
        match self.present(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if self.from_query.contains(key) => match s.as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(invalid()),
            },
            Some(_) => Err(invalid()),
        }
    }

    /// An optional non-negative integer; from the query string it may be a decimal string.
    pub fn opt_u64(&self, key: &str) -> ApiResult<Option<u64>> {
        let invalid = || ApiError::invalid_type(&self.name(key), "a non-negative integer");
        match self.present(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(invalid),
            Some(Value::String(s)) if self.from_query.contains(key) => {
                s.parse().map(Some).map_err(|_| invalid())
            }
            Some(_) => Err(invalid()),
        }
    }

    /// An optional JSON object, as given.
    pub fn opt_json_object(&self, key: &str) -> ApiResult<Option<&Map<String, Value>>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(ApiError::invalid_type(&self.name(key), "an object")),
        }
    }

    /// A required array of strings.
    pub fn string_array(&self, key: &str) -> ApiResult<Vec<String>> {
        let invalid = || ApiError::invalid_type(&self.name(key), "an array of strings");
        match self.present(key) {
            None => Err(ApiError::incomplete(&self.name(key))),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
                .collect(),
            Some(_) => Err(invalid()),
        }
    }

    /// An optional nested object, read with the same rules.
    pub fn opt_object(&self, key: &str) -> ApiResult<Option<Params>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Params {
                prefix: format!("{}.", self.name(key)),
                values: map.clone(),
                from_query: HashSet::new(),
            })),
            Some(_) => Err(ApiError::invalid_type(&self.name(key), "an object")),
        }
    }
}

async fn read_body(req: &HttpRequest, mut payload: Payload, limit: usize) -> ApiResult<Vec<u8>> {
    let too_large = || {
        ApiError::new(
            ErrorCode::Failed,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .with("limit", limit)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            let status = if crate::net::is_body_timeout(&e) {
                StatusCode::REQUEST_TIMEOUT
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(
                ErrorCode::Failed,
                format!("could not read the request body: {e}"),
            )
            .status(status)
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl FromRequest for ApiRequest {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<Chat>>()
                .ok_or_else(|| ApiError::internal("application state is missing"))?
                .clone();
            let body = read_body(&req, payload, state.config.body_limit).await?;
            let headers = session_headers(req.headers())?;
            // Cluster mode: permission changes made on other nodes apply to this request.
            if let Some(cluster) = state.cluster() {
                cluster.catch_up(&state).await;
            }
            ApiRequest::parse(req.query_string(), &body, &headers, &state)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(r: ApiResult<Value>) -> &'static str {
        r.unwrap_err().code.as_str()
    }

    #[test]
    fn strict_json_refuses_duplicate_keys_at_any_depth() {
        assert_eq!(
            code(parse_strict_json(br#"{"a":1,"a":2}"#)),
            "REPEATED_PARAMETERS"
        );
        assert_eq!(
            code(parse_strict_json(br#"{"p":{"old":"x","old":"y"}}"#)),
            "REPEATED_PARAMETERS"
        );
        assert_eq!(
            parse_strict_json(br#"{"a":[1,{"b":null}],"c":"d"}"#).unwrap(),
            json!({"a":[1,{"b":null}],"c":"d"})
        );
    }

    #[test]
    fn non_json_is_failed() {
        assert_eq!(code(parse_strict_json(b"{nope")), "FAILED");
        assert_eq!(code(parse_strict_json(br#"{"a":1} trailing"#)), "FAILED");
        assert_eq!(parse_body(b"[1]").unwrap_err().code, ErrorCode::Failed);
        assert!(parse_body(b"  ").unwrap().is_empty());
    }

    #[test]
    fn duplicate_query_keys_are_repeated() {
        assert_eq!(
            parse_query("a=1&b=2&a=3").unwrap_err().code,
            ErrorCode::RepeatedParameters
        );
        assert_eq!(parse_query("a=1%202").unwrap()["a"], "1 2");
    }

    fn params(v: Value) -> Params {
        Params {
            values: v.as_object().unwrap().clone(),
            ..Default::default()
        }
    }

    #[test]
    fn typed_access_names_the_parameter() {
        let p = params(json!({"name": 5, "flair": null, "pw": {"old": 1}}));
        let e = p.string("name").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParameterType);
        assert_eq!(e.extra["parameter"], "name");
        let e = p.string("missing").unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompleteParameters);
        assert_eq!(e.extra["missing"], "missing");
        assert_eq!(p.nullable_string("flair").unwrap(), Some(None));
        assert_eq!(p.nullable_string("absent").unwrap(), None);
        let nested = p.opt_object("pw").unwrap().unwrap();
        assert_eq!(
            nested.string("old").unwrap_err().extra["parameter"],
            "pw.old"
        );
        assert_eq!(nested.string("new").unwrap_err().extra["missing"], "pw.new");
    }

    #[test]
    fn query_integers_are_coerced_but_body_strings_are_not() {
        let mut p = params(json!({"limit": "20"}));
        assert!(p.opt_u64("limit").is_err());
        p.from_query.insert("limit".into());
        assert_eq!(p.opt_u64("limit").unwrap(), Some(20));
        let p = params(json!({"limit": -1}));
        assert!(p.opt_u64("limit").is_err());
    }
}
