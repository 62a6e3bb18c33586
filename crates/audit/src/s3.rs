//! Shipping to Amazon S3 (or an S3-compatible store such as moto, LocalStack or MinIO) without
//! an AWS SDK: a small client over ureq that signs its requests with AWS Signature Version 4
//! (`sigv4.rs`).
//!
//! Each delivered batch becomes one object `<prefix>/<first seq:020>-<last seq:020>.jsonl`
//! holding the entry lines exactly as stored in the log (one per line). The names sort in log
//! order, and a batch always lands under the same name, so a retried or resumed delivery can
//! never write a second copy: objects are written with `If-None-Match: *`, and an object that
//! is already there is compared byte for byte with the batch instead of being overwritten.
//!
//! The endpoint is `endpoint` from the configuration, else `AWS_ENDPOINT_URL_S3`, else
//! `AWS_ENDPOINT_URL` (path-style addressing: `<endpoint>/<bucket>/<key>`), else AWS itself
//! (`https://<bucket>.s3.<region>.amazonaws.com`, which needs the `https` feature). The region is
//! `region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`. Credentials come from
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; a missing one is an
//! error when shipping starts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use agentsafe_core::Secret;

use crate::AuditError;
use crate::sigv4::{self, SignRequest, SigningScope};

/// The largest response body read (an object read back, a listing page, an error document).
const MAX_BODY: u64 = 1 << 30;

/// A bucket and a key prefix: `s3://BUCKET` or `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Location {
    bucket: String,
    prefix: String,
}

impl S3Location {
    /// A location, checked like a parsed `s3://` destination.
    ///
    /// # Errors
    /// When the bucket name is not a valid S3 bucket name or the prefix has empty segments or
    /// control characters.
    pub fn new(bucket: &str, prefix: &str) -> Result<S3Location, AuditError> {
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(str::is_empty) && !prefix.is_empty() {
            return Err(AuditError::Config(format!(
                "the key prefix `{prefix}` of `s3://{bucket}` has an empty segment (`//`)"
            )));
        }
        if prefix.chars().any(char::is_control) {
            return Err(AuditError::Config(format!(
                "the key prefix of `s3://{bucket}` contains a control character"
            )));
        }
        // A proxy or server that normalises paths would turn `a/../b` into another key, or
        // with path-style addressing into another bucket.
        if prefix.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(AuditError::Config(format!(
                "the key prefix `{prefix}` of `s3://{bucket}` has a `.` or `..` segment"
            )));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without leading or trailing `/` (empty for none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the object holding entries `first..=last`:
    /// `<prefix>/<first:020>-<last:020>.jsonl`. Keys of one prefix sort in log order.
    pub fn object_key(&self, first: u64, last: u64) -> String {
        format!("{}{first:020}-{last:020}.jsonl", self.key_prefix())
    }

    /// The `(first, last)` sequence numbers of a key named by [`S3Location::object_key`], or
    /// `None` for any other key.
    pub fn parse_object_key(&self, key: &str) -> Option<(u64, u64)> {
        let name = key.strip_prefix(&self.key_prefix())?;
        let (first, last) = name.strip_suffix(".jsonl")?.split_once('-')?;
        if first.len() != 20 || last.len() != 20 {
            return None;
        }
        if !first
            .bytes()
            .chain(last.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        (first <= last).then_some((first, last))
    }

    /// The key of the object holding the signed checkpoint of tree size `size` with root `root`:
    /// `<prefix>/checkpoints/<size:020>-<root hex>.checkpoint`. It is not a batch name
    /// ([`S3Location::parse_object_key`] gives `None`), and two different checkpoints never share
    /// a key.
    pub fn checkpoint_key(&self, size: u64, root: &crate::Hash) -> String {
        format!(
            "{}checkpoints/{size:020}-{}.checkpoint",
            self.key_prefix(),
            root.to_hex()
        )
    }

    /// `<prefix>/`, or the empty string without a prefix.
    pub fn key_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl FromStr for S3Location {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| {
            AuditError::Config(format!(
                "`{s}` is not an S3 destination, expected `s3://BUCKET/PREFIX`"
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        S3Location::new(bucket, prefix)
    }
}

/// Checks the S3 bucket naming rules that matter for addressing: 3 to 63 characters, lower-case
/// letters, digits, `.` and `-`, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), AuditError> {
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && ok_chars && ok_ends && !bucket.contains("..") {
        Ok(())
    } else {
        Err(AuditError::Config(format!(
            "`{bucket}` is not a valid S3 bucket name (3 to 63 characters: lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit), as in `s3://my-audit-bucket/agentsafe`"
        )))
    }
}

/// An endpoint override: scheme, authority and an optional base path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    /// `host` or `host:port`, exactly as sent in the `Host` header.
    authority: String,
    /// Empty, or `/path` without a trailing `/`.
    base_path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, AuditError> {
        let bad = |why: &str| {
            AuditError::Config(format!(
                "S3 endpoint `{url}` {why}; expected `http://HOST[:PORT]` or `https://HOST[:PORT]`"
            ))
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("has no `http://` or `https://` scheme"));
        };
        if rest.contains(['?', '#']) {
            return Err(bad("has a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("has no usable host"));
        }
        let base_path = path.trim_end_matches('/');
        if base_path.split('/').skip(1).any(str::is_empty) {
            return Err(bad("has an empty path segment"));
        }
        Ok(Endpoint {
            https,
            authority: authority.to_owned(),
            base_path: base_path
                .split('/')
                .map(|seg| sigv4::uri_encode(seg, false))
                .collect::<Vec<_>>()
                .join("/"),
        })
    }

    fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// AWS credentials from the standard environment variables.
///
/// # Security
/// `Debug` shows the access key id only; the secret key and session token never print.
#[derive(Clone)]
pub struct S3Credentials {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

impl S3Credentials {
    /// Credentials given explicitly.
    pub fn new(
        access_key_id: &str,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    ) -> Self {
        S3Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key,
            session_token: session_token.filter(|t| !t.is_empty()),
        }
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional) `AWS_SESSION_TOKEN`.
    ///
    /// # Errors
    /// When the key id or the secret key is missing or empty (the error names the variable,
    /// never a value).
    pub fn from_env() -> Result<Self, AuditError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, AuditError> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        let missing: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
            .into_iter()
            .filter(|n| get(n).is_none())
            .collect();
        match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Ok(S3Credentials::new(
                &id,
                Secret::new(secret),
                get("AWS_SESSION_TOKEN").map(Secret::new),
            )),
            _ => Err(AuditError::Config(format!(
                "no AWS credentials for S3 shipping: {} not set (also set AWS_SESSION_TOKEN for temporary credentials)",
                missing.join(" and ")
            ))),
        }
    }
}

/// How a failed S3 request should be treated.
#[derive(Debug, Clone)]
pub(crate) struct S3Failure {
    /// Worth trying again.
    pub retry: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What failed, naming the bucket and key and the S3 error code (never a secret).
    pub message: String,
}

impl S3Failure {
    fn into_error(self, dest: &str) -> AuditError {
        AuditError::Ship {
            target: dest.to_owned(),
            reason: self.message,
        }
    }
}

/// The answer of [`S3Client::put_object_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object with the same key and the same bytes was already there (an earlier delivery
    /// whose answer was lost, or an interrupted run); nothing was written.
    AlreadyPresent,
}

/// A minimal S3 client: create a bucket, put, get and list objects, each request signed with
/// AWS Signature Version 4.
#[derive(Debug, Clone)]
pub struct S3Client {
    /// `None`: AWS itself (virtual-hosted addressing); `Some`: an override (path-style).
    endpoint: Option<Endpoint>,
    region: String,
    credentials: S3Credentials,
    agent: ureq::Agent,
}

/// One request before signing.
#[derive(Clone, Copy)]
struct Call<'a> {
    method: &'a str,
    bucket: &'a str,
    key: Option<&'a str>,
    /// Not encoded.
    query: &'a [(&'a str, &'a str)],
    /// Headers to send and sign besides `host`, `x-amz-date`, `x-amz-content-sha256` and the
    /// session token.
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

/// Where one request goes.
struct Located {
    url_base: String,
    host: String,
    canonical_uri: String,
}

impl S3Client {
    /// A client for `region` (else `AWS_REGION`, else `AWS_DEFAULT_REGION`) at `endpoint` (else
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS), with credentials from the
    /// environment; `timeout` bounds each request.
    ///
    /// # Errors
    /// When no region or no credentials are found, the endpoint is malformed, or it is an
    /// `https://` endpoint and this build has no TLS (the `https` feature).
    pub fn from_env(
        region: Option<&str>,
        endpoint: Option<&str>,
        timeout: Duration,
    ) -> Result<S3Client, AuditError> {
        Self::from_lookup(region, endpoint, timeout, &|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(
        region: Option<&str>,
        endpoint: Option<&str>,
        timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<S3Client, AuditError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let region = region
            .map(str::to_owned)
            .or_else(|| get("AWS_REGION"))
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or_else(|| {
                AuditError::Config(
                    "no AWS region for S3 shipping: set `region` in the `[[audit.ship]]` target, or AWS_REGION / AWS_DEFAULT_REGION".into(),
                )
            })?;
        check_region(&region)?;
        let endpoint = match endpoint
            .map(str::to_owned)
            .or_else(|| get("AWS_ENDPOINT_URL_S3"))
            .or_else(|| get("AWS_ENDPOINT_URL"))
        {
            Some(url) => Some(Endpoint::parse(url.trim())?),
            None => None,
        };
        let https = endpoint.as_ref().is_none_or(|e| e.https);
        if https && !cfg!(feature = "https") {
            return Err(AuditError::Config(format!(
                "S3 shipping to {} needs TLS: build agentsafe-audit with the `https` feature, or set an `http://` endpoint",
                endpoint.as_ref().map_or_else(
                    || "AWS".to_owned(),
                    |e| format!("`https://{}`", e.authority)
                )
            )));
        }
        let credentials = S3Credentials::from_lookup(env)?;
        Ok(Self::new(endpoint, region, credentials, timeout))
    }

    fn new(
        endpoint: Option<Endpoint>,
        region: String,
        credentials: S3Credentials,
        timeout: Duration,
    ) -> S3Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        S3Client {
            endpoint,
            region,
            credentials,
            agent,
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn locate(&self, bucket: &str, key: Option<&str>) -> Located {
        let key_path = key.map_or(String::new(), |k| {
            format!("/{}", sigv4::uri_encode(k, true))
        });
        match &self.endpoint {
            Some(e) => Located {
                url_base: format!("{}://{}", e.scheme(), e.authority),
                host: e.authority.clone(),
                canonical_uri: format!("{}/{bucket}{key_path}", e.base_path),
            },
            // Bucket names with dots do not match AWS's wildcard certificate as a host name.
            None if bucket.contains('.') => {
                let host = format!("s3.{}.amazonaws.com", self.region);
                Located {
                    url_base: format!("https://{host}"),
                    host,
                    canonical_uri: format!("/{bucket}{key_path}"),
                }
            }
            None => {
                let host = format!("{bucket}.s3.{}.amazonaws.com", self.region);
                Located {
                    url_base: format!("https://{host}"),
                    host,
                    canonical_uri: if key_path.is_empty() {
                        "/".to_owned()
                    } else {
                        key_path
                    },
                }
            }
        }
    }

    /// Sends one signed request; returns the status and body of any HTTP answer.
    fn send(&self, call: &Call<'_>) -> Result<(u16, Vec<u8>), String> {
        let Call {
            method,
            bucket,
            key,
            query,
            headers: extra_headers,
            body,
        } = *call;
        let loc = self.locate(bucket, key);
        let amz_date = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let payload_hash = sigv4::sha256_hex(body);
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", &loc.host),
            ("x-amz-content-sha256", &payload_hash),
            ("x-amz-date", &amz_date),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", token.expose()));
        }
        headers.extend_from_slice(extra_headers);
        let scope = SigningScope {
            secret: self.credentials.secret_access_key.expose(),
            amz_date: &amz_date,
            region: &self.region,
            service: "s3",
        };
        let req = SignRequest {
            method,
            canonical_uri: &loc.canonical_uri,
            query,
            headers: &headers,
            payload_hash: &payload_hash,
        };
        let authorization = sigv4::authorization(&self.credentials.access_key_id, &scope, &req);
        let query_string = sigv4::canonical_query(query);
        let url = if query_string.is_empty() {
            format!("{}{}", loc.url_base, loc.canonical_uri)
        } else {
            format!("{}{}?{query_string}", loc.url_base, loc.canonical_uri)
        };
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in &headers {
            builder = builder.header(*k, *v);
        }
        builder = builder.header("authorization", authorization);
        if method == "PUT" {
            // S3 wants a length even for an empty body; ureq only sends one for a non-empty body.
            builder = builder.header("content-length", body.len().to_string());
        }
        let request = builder
            .body(body.to_vec())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let resp = self
            .agent
            .run(request)
            .map_err(|e| format!("cannot reach the S3 endpoint: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| format!("cannot read the S3 answer: {e}"))?;
        Ok((status, body))
    }

    /// Sends a request and turns a transport failure or a non-2xx answer into an [`S3Failure`]
    /// whose message starts with `what` (such as ``put `key` in bucket `b` ``).
    fn exchange(&self, what: &str, call: &Call<'_>) -> Result<(u16, Vec<u8>), S3Failure> {
        match self.send(call) {
            Err(e) => Err(S3Failure {
                retry: true,
                status: None,
                message: format!("cannot {what}: {e}"),
            }),
            Ok((status, body)) if (200..300).contains(&status) => Ok((status, body)),
            Ok((status, body)) => Err(failure(what, status, &body)),
        }
    }

    /// Creates a bucket (in the client's region).
    ///
    /// # Errors
    /// When S3 refuses (the error names the bucket and S3's error code, such as
    /// `BucketAlreadyOwnedByYou`), or cannot be reached.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), AuditError> {
        check_bucket(bucket)?;
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        self.exchange(
            &format!("create bucket `{bucket}`"),
            &Call {
                method: "PUT",
                bucket,
                key: None,
                query: &[],
                headers: &[],
                body: body.as_bytes(),
            },
        )
        .map(|_| ())
        .map_err(|f| f.into_error(&format!("s3://{bucket}")))
    }

    /// Writes an object unless one with that key exists (`If-None-Match: *`); an existing object
    /// is read back and must hold exactly `body`.
    pub(crate) fn put_object_new_inner(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<PutOutcome, S3Failure> {
        let what = format!("put `{key}` in bucket `{bucket}`");
        let call = Call {
            method: "PUT",
            bucket,
            key: Some(key),
            query: &[],
            headers: &[("content-type", content_type), ("if-none-match", "*")],
            body,
        };
        match self.exchange(&what, &call) {
            Ok(_) => Ok(PutOutcome::Created),
            Err(f) if f.status == Some(412) => {
                let existing = self.get_object_inner(bucket, key)?;
                if existing == body {
                    Ok(PutOutcome::AlreadyPresent)
                } else {
                    Err(S3Failure {
                        retry: false,
                        status: Some(412),
                        message: format!(
                            "cannot {what}: an object with that key already holds other entries (is another audit log shipping to the same bucket and prefix?)"
                        ),
                    })
                }
            }
            Err(f) => Err(f),
        }
    }

    /// Writes an object that must not exist yet; see [`PutOutcome`].
    ///
    /// # Errors
    /// When S3 refuses (naming bucket, key and S3's error code), cannot be reached, or an object
    /// with that key already holds other bytes.
    pub fn put_object_new(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
    ) -> Result<PutOutcome, AuditError> {
        self.put_object_new_inner(bucket, key, body, "application/x-ndjson")
            .map_err(|f| f.into_error(&format!("s3://{bucket}")))
    }

    pub(crate) fn get_object_inner(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Failure> {
        self.exchange(
            &format!("get `{key}` from bucket `{bucket}`"),
            &Call {
                method: "GET",
                bucket,
                key: Some(key),
                query: &[],
                headers: &[],
                body: b"",
            },
        )
        .map(|(_, body)| body)
    }

    /// Reads an object.
    ///
    /// # Errors
    /// When S3 refuses (such as `NoSuchKey`) or cannot be reached.
    pub fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AuditError> {
        self.get_object_inner(bucket, key)
            .map_err(|f| f.into_error(&format!("s3://{bucket}")))
    }

    pub(crate) fn list_keys_inner(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, S3Failure> {
        let what = format!("list bucket `{bucket}` under `{prefix}`");
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(s) = start_after {
                query.push(("start-after", s));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t));
            }
            let call = Call {
                method: "GET",
                bucket,
                key: None,
                query: &query,
                headers: &[],
                body: b"",
            };
            let (_, body) = self.exchange(&what, &call)?;
            let text = String::from_utf8_lossy(&body);
            for contents in xml_elements(&text, "Contents") {
                if let Some(k) = xml_elements(contents, "Key").first() {
                    keys.push(xml_unescape(k));
                }
            }
            let truncated = xml_elements(&text, "IsTruncated")
                .first()
                .is_some_and(|v| v.trim() == "true");
            if !truncated {
                return Ok(keys);
            }
            // A partial listing taken for the whole would make `ship_log` ship a batch twice.
            let next = xml_elements(&text, "NextContinuationToken")
                .first()
                .map(|t| xml_unescape(t));
            match next {
                None => {
                    return Err(S3Failure {
                        retry: false,
                        status: None,
                        message: format!(
                            "{what}: S3 said the listing is truncated but gave no continuation token"
                        ),
                    });
                }
                Some(t) if token.as_deref() == Some(t.as_str()) => {
                    return Err(S3Failure {
                        retry: false,
                        status: None,
                        message: format!(
                            "{what}: S3 repeated the continuation token; the listing would never end"
                        ),
                    });
                }
                Some(t) => token = Some(t),
            }
        }
    }

    /// The keys under `prefix` (after `start_after` when given), in S3's order (UTF-8 binary),
    /// following continuation tokens.
    ///
    /// # Errors
    /// When S3 refuses (such as `NoSuchBucket`) or cannot be reached.
    pub fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, AuditError> {
        self.list_keys_inner(bucket, prefix, start_after)
            .map_err(|f| f.into_error(&format!("s3://{bucket}")))
    }
}

fn check_region(region: &str) -> Result<(), AuditError> {
    if !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(AuditError::Config(format!(
            "`{region}` is not an AWS region name, as in `us-east-1`"
        )))
    }
}

/// Classifies a non-2xx answer: the S3 error code and message from the XML body.
fn failure(what: &str, status: u16, body: &[u8]) -> S3Failure {
    let text = String::from_utf8_lossy(body);
    let code = xml_elements(&text, "Code")
        .first()
        .map(|c| xml_unescape(c.trim()));
    let message = xml_elements(&text, "Message")
        .first()
        .map(|m| xml_unescape(m.trim()));
    let retry = matches!(status, 408 | 429 | 500..=599)
        || code.as_deref().is_some_and(|c| {
            matches!(
                c,
                "RequestTimeout"
                    | "RequestTimeTooSkewed"
                    | "SlowDown"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "OperationAborted"
                    | "ConditionalRequestConflict"
            )
        });
    let mut text = format!("cannot {what}: S3 answered {status}");
    if let Some(c) = &code {
        text.push(' ');
        text.push_str(&truncate(c, 64));
    }
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(&truncate(&m, 300));
    }
    S3Failure {
        retry,
        status: Some(status),
        message: text,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// The text content of every `<tag>...</tag>` element (no attributes, no nesting of the same
/// tag), which is all S3's error and listing documents need.
fn xml_elements<'a>(text: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = rest.get(i + open.len()..).unwrap_or_default();
        let Some(j) = after.find(&close) else { break };
        out.push(after.get(..j).unwrap_or_default());
        rest = after.get(j + close.len()..).unwrap_or_default();
    }
    out
}

/// Resolves the five predefined XML entities and numeric character references.
fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let tail = rest.get(i..).unwrap_or_default();
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = tail.get(1..end).unwrap_or_default();
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = tail.get(end + 1..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = tail.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const CREDS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "super-secret-value"),
    ];

    #[test]
    fn locations_parse_and_print() {
        let l: S3Location = "s3://audit-bucket/agentsafe/prod/".parse().unwrap();
        assert_eq!((l.bucket(), l.prefix()), ("audit-bucket", "agentsafe/prod"));
        assert_eq!(l.to_string(), "s3://audit-bucket/agentsafe/prod");
        // Checkpoint objects are not batches either.
        let cp = l.checkpoint_key(99, &crate::merkle::leaf_hash(b"x"));
        assert!(
            cp.starts_with("agentsafe/prod/checkpoints/00000000000000000099-"),
            "{cp}"
        );
        assert_eq!(l.parse_object_key(&cp), None);
        let bare: S3Location = "s3://audit-bucket".parse().unwrap();
        assert_eq!(bare.prefix(), "");
        assert_eq!(bare.to_string(), "s3://audit-bucket");
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Audit",
            "s3://under_score/x",
            "s3://-bucket",
            "s3://bucket-",
            "s3://a..b",
            "s3://bucket/a//b",
            "s3://bucket/a\u{7}b",
            "s3://bucket/../other",
            "s3://bucket/a/./b",
            "http://bucket",
        ] {
            let err = bad.parse::<S3Location>().unwrap_err().to_string();
            assert!(
                err.starts_with("invalid audit configuration"),
                "{bad}: {err}"
            );
        }
        let err = "s3://My_Bucket/x".parse::<S3Location>().unwrap_err();
        assert!(
            err.to_string()
                .contains("`My_Bucket` is not a valid S3 bucket name")
        );
    }

    #[test]
    fn object_keys_sort_in_log_order_and_round_trip() {
        let l: S3Location = "s3://audit-bucket/p".parse().unwrap();
        assert_eq!(
            l.object_key(0, 99),
            "p/00000000000000000000-00000000000000000099.jsonl"
        );
        let mut keys: Vec<String> = [(1000, 1099), (9, 9), (10, 99), (100, 999), (0, 8)]
            .iter()
            .map(|&(a, b)| l.object_key(a, b))
            .collect();
        keys.sort();
        let ranges: Vec<(u64, u64)> = keys.iter().filter_map(|k| l.parse_object_key(k)).collect();
        assert_eq!(
            ranges,
            vec![(0, 8), (9, 9), (10, 99), (100, 999), (1000, 1099)]
        );
        assert_eq!(
            l.parse_object_key(&l.object_key(u64::MAX - 1, u64::MAX)),
            Some((u64::MAX - 1, u64::MAX))
        );
        // Other objects under the prefix are not batches.
        for other in [
            "p/readme.txt",
            "q/00000000000000000000-00000000000000000099.jsonl",
            "p/00000000000000000099-00000000000000000000.jsonl",
            "p/0-99.jsonl",
            "p/sub/00000000000000000000-00000000000000000099.jsonl",
        ] {
            assert_eq!(l.parse_object_key(other), None, "{other}");
        }
        // Checkpoint objects are not batches either.
        let cp = l.checkpoint_key(99, &crate::merkle::leaf_hash(b"x"));
        assert!(
            cp.starts_with("p/checkpoints/00000000000000000099-"),
            "{cp}"
        );
        assert_eq!(l.parse_object_key(&cp), None);
        let bare: S3Location = "s3://audit-bucket".parse().unwrap();
        assert_eq!(
            bare.object_key(5, 6),
            "00000000000000000005-00000000000000000006.jsonl"
        );
        assert_eq!(bare.parse_object_key(&bare.object_key(5, 6)), Some((5, 6)));
    }

    #[test]
    fn endpoints_are_path_style_and_aws_is_virtual_hosted() {
        let mut vars = CREDS.to_vec();
        vars.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:5077/"));
        vars.push(("AWS_DEFAULT_REGION", "eu-west-3"));
        let c = S3Client::from_lookup(None, None, Duration::from_secs(1), &env(&vars)).unwrap();
        assert_eq!(c.region(), "eu-west-3");
        let loc = c.locate("audit-bucket", Some("p/a b.jsonl"));
        assert_eq!(loc.url_base, "http://127.0.0.1:5077");
        assert_eq!(loc.host, "127.0.0.1:5077");
        assert_eq!(loc.canonical_uri, "/audit-bucket/p/a%20b.jsonl");

        // The configured endpoint and region win over the environment.
        let c = S3Client::from_lookup(
            Some("us-west-2"),
            Some("http://minio.internal:9000/s3"),
            Duration::from_secs(1),
            &env(&vars),
        )
        .unwrap();
        assert_eq!(c.region(), "us-west-2");
        let loc = c.locate("audit-bucket", None);
        assert_eq!(loc.canonical_uri, "/s3/audit-bucket");
        assert_eq!(loc.host, "minio.internal:9000");

        let aws = S3Client::new(
            None,
            "eu-west-1".into(),
            S3Credentials::from_lookup(&env(&CREDS)).unwrap(),
            Duration::from_secs(1),
        );
        let loc = aws.locate("audit-bucket", Some("k.jsonl"));
        assert_eq!(
            loc.url_base,
            "https://audit-bucket.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(loc.canonical_uri, "/k.jsonl");
        let loc = aws.locate("audit.bucket", Some("k.jsonl"));
        assert_eq!(loc.host, "s3.eu-west-1.amazonaws.com");
        assert_eq!(loc.canonical_uri, "/audit.bucket/k.jsonl");
    }

    #[test]
    fn missing_settings_are_errors_that_name_them_and_no_secret() {
        let no_creds = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://h:1"),
        ];
        let err = S3Client::from_lookup(None, None, Duration::from_secs(1), &env(&no_creds))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"),
            "{err}"
        );
        let only_id = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://h:1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ];
        let err = S3Client::from_lookup(None, None, Duration::from_secs(1), &env(&only_id))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY not set"), "{err}");
        assert!(!err.contains("AWS_ACCESS_KEY_ID and"), "{err}");

        let mut no_region = CREDS.to_vec();
        no_region.push(("AWS_ENDPOINT_URL", "http://h:1"));
        let err = S3Client::from_lookup(None, None, Duration::from_secs(1), &env(&no_region))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no AWS region"), "{err}");

        for bad in [
            "ftp://h",
            "h:9000",
            "http://",
            "http://u:p@h",
            "http://h/?x=1",
        ] {
            let err = S3Client::from_lookup(
                Some("us-east-1"),
                Some(bad),
                Duration::from_secs(1),
                &env(&CREDS),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!("S3 endpoint `{bad}`")),
                "{bad}: {err}"
            );
            assert!(!err.contains("super-secret-value"));
        }
        let err = S3Client::from_lookup(
            Some("US East"),
            Some("http://h:1"),
            Duration::from_secs(1),
            &env(&CREDS),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`US East` is not an AWS region"), "{err}");

        if !cfg!(feature = "https") {
            let err = S3Client::from_lookup(
                Some("us-east-1"),
                None,
                Duration::from_secs(1),
                &env(&CREDS),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("needs TLS"), "{err}");
        }

        let mut with_token = CREDS.to_vec();
        with_token.push(("AWS_SESSION_TOKEN", "token-value"));
        let creds = S3Credentials::from_lookup(&env(&with_token)).unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("super-secret-value") && !shown.contains("token-value"));
    }

    #[test]
    fn error_documents_give_the_code_and_message_and_retry_class() {
        let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>audit-bucket</BucketName><RequestId>1</RequestId></Error>";
        let f = failure("put `p/x.jsonl` in bucket `audit-bucket`", 404, body);
        assert_eq!(
            f.message,
            "cannot put `p/x.jsonl` in bucket `audit-bucket`: S3 answered 404 NoSuchBucket: The specified bucket does not exist"
        );
        assert!(!f.retry);
        let denied = failure(
            "x",
            403,
            b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
        );
        assert!(!denied.retry);
        assert!(denied.message.contains("403 AccessDenied"));
        assert!(failure("x", 503, b"<Error><Code>SlowDown</Code></Error>").retry);
        assert!(failure("x", 400, b"<Error><Code>RequestTimeout</Code></Error>").retry);
        assert!(failure("x", 500, b"").retry);
        assert_eq!(failure("x", 500, b"").message, "cannot x: S3 answered 500");
        assert_eq!(
            xml_unescape("a&amp;b&lt;&#65;&#x42;&bogus;"),
            "a&b<AB&bogus;"
        );
        assert_eq!(
            xml_elements("<a><Key>x</Key></a><a><Key>y&amp;z</Key></a>", "Key"),
            vec!["x", "y&amp;z"]
        );
    }
}
