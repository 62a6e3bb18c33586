//! AWS Signature Version 4 for requests whose payload is sent in a single chunk (the header
//! form), as described in the Amazon S3 API reference ("Signature Calculations for the
//! Authorization Header: Transferring Payload in a Single Chunk"). Checked against the worked
//! examples published there.

use std::fmt::Write as _;

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

/// The algorithm name in the string to sign and the `Authorization` header.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// SHA-256 of the empty payload, in hex.
#[cfg(test)]
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One request to sign. Not `Debug`: its headers may hold `x-amz-security-token`.
#[derive(Clone, Copy)]
pub(crate) struct SignRequest<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The path exactly as sent: every segment already URI-encoded (see [`uri_encode`]).
    pub canonical_uri: &'a str,
    /// Query parameters, not encoded; they are encoded and sorted here.
    pub query: &'a [(&'a str, &'a str)],
    /// Every header to sign (the request must send exactly these values), including `host`,
    /// `x-amz-date` and `x-amz-content-sha256`. Names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the payload.
    pub payload_hash: &'a str,
}

/// Who signs, for which scope.
#[derive(Clone, Copy)]
pub(crate) struct SigningScope<'a> {
    /// The secret access key.
    pub secret: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the value of `x-amz-date`.
    pub amz_date: &'a str,
    /// The region, such as `us-east-1`.
    pub region: &'a str,
    /// The service, `s3`.
    pub service: &'a str,
}

impl SigningScope<'_> {
    fn date(&self) -> &str {
        self.amz_date.get(..8).unwrap_or(self.amz_date)
    }

    /// `<date>/<region>/<service>/aws4_request`.
    pub(crate) fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date(),
            self.region,
            self.service
        )
    }
}

/// URI-encodes per the SigV4 rules: unreserved characters (`A-Z a-z 0-9 - . _ ~`) stay, every
/// other byte becomes `%XX` (upper-case hex); `/` stays only when `keep_slash`.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    crate::merkle::hex_encode(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = match <Hmac<Sha256>>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Trims a header value and collapses inner runs of spaces, as the canonical form requires.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical headers block and the signed headers list.
fn canonical_headers(headers: &[(&str, &str)]) -> (String, String) {
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), canonical_value(v)))
        .collect();
    hs.sort();
    let mut block = String::new();
    for (k, v) in &hs {
        let _ = writeln!(block, "{k}:{v}");
    }
    let signed = hs
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, signed)
}

/// The canonical query string: each name and value encoded (`/` too), sorted by name then value.
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    q.sort();
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request and the signed headers list.
pub(crate) fn canonical_request(req: &SignRequest<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(req.headers);
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.canonical_uri,
        canonical_query(req.query),
        headers,
        signed,
        req.payload_hash
    );
    (text, signed)
}

/// The string to sign for a canonical request.
pub(crate) fn string_to_sign(scope: &SigningScope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        scope.amz_date,
        scope.credential_scope(),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of a string to sign.
pub(crate) fn signature(scope: &SigningScope<'_>, string_to_sign: &str) -> String {
    let k_date = hmac(
        format!("AWS4{}", scope.secret).as_bytes(),
        scope.date().as_bytes(),
    );
    let k_region = hmac(&k_date, scope.region.as_bytes());
    let k_service = hmac(&k_region, scope.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    crate::merkle::hex_encode(&hmac(&k_signing, string_to_sign.as_bytes()))
}

/// The `Authorization` header value for a request.
///
/// # Security
/// The value carries the access key id and a signature, never the secret key.
pub(crate) fn authorization(
    access_key_id: &str,
    scope: &SigningScope<'_>,
    req: &SignRequest<'_>,
) -> String {
    let (canonical, signed) = canonical_request(req);
    let sig = signature(scope, &string_to_sign(scope, &canonical));
    format!(
        "{ALGORITHM} Credential={access_key_id}/{},SignedHeaders={signed},Signature={sig}",
        scope.credential_scope()
    )
}

#[cfg(test)]
mod tests {
    //! The worked examples of the Amazon S3 API reference, "Signature Calculations for the
    //! Authorization Header: Transferring Payload in a Single Chunk (AWS Signature Version 4)"
    //! (docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html): bucket
    //! `examplebucket`, `us-east-1`, 2013-05-24T00:00:00Z, the documentation's example key pair.
    use super::*;

    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "examplebucket.s3.amazonaws.com";
    const DATE: &str = "20130524T000000Z";

    fn scope() -> SigningScope<'static> {
        SigningScope {
            secret: SECRET,
            amz_date: DATE,
            region: "us-east-1",
            service: "s3",
        }
    }

    fn signature_of(auth: &str) -> &str {
        auth.rsplit_once("Signature=").map_or("", |(_, s)| s)
    }

    /// "Example: GET Object": a `Range` header, the empty payload; the documentation also shows
    /// the canonical request and the string to sign, checked byte for byte.
    #[test]
    fn the_get_object_example() {
        let req = SignRequest {
            method: "GET",
            canonical_uri: "/test.txt",
            query: &[],
            headers: &[
                ("Host", HOST),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ],
            payload_hash: EMPTY_SHA256,
        };
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(
            canonical,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            string_to_sign(&scope(), &canonical),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            authorization(ACCESS_KEY, &scope(), &req),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// "Example: PUT Object": a `$` in the key (encoded `%24`), a payload, a `Date` and an
    /// `x-amz-storage-class` header.
    #[test]
    fn the_put_object_example() {
        let payload_hash = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            payload_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let uri = format!("/{}", uri_encode("test$file.text", true));
        assert_eq!(uri, "/test%24file.text");
        let req = SignRequest {
            method: "PUT",
            canonical_uri: &uri,
            query: &[],
            headers: &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("Host", HOST),
                ("x-amz-content-sha256", &payload_hash),
                ("x-amz-date", DATE),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            payload_hash: &payload_hash,
        };
        let auth = authorization(ACCESS_KEY, &scope(), &req);
        assert!(
            auth.contains(
                ",SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
            ),
            "{auth}"
        );
        assert_eq!(
            signature_of(&auth),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    /// "Example: GET Bucket Lifecycle": a query parameter without a value (`lifecycle=`).
    #[test]
    fn the_get_bucket_lifecycle_example() {
        let req = SignRequest {
            method: "GET",
            canonical_uri: "/",
            query: &[("lifecycle", "")],
            headers: &[
                ("Host", HOST),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ],
            payload_hash: EMPTY_SHA256,
        };
        assert_eq!(
            signature_of(&authorization(ACCESS_KEY, &scope(), &req)),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    /// "Example: Get Bucket (List Objects)": parameters given out of order are signed sorted.
    #[test]
    fn the_list_objects_example() {
        let req = SignRequest {
            method: "GET",
            canonical_uri: "/",
            query: &[("prefix", "J"), ("max-keys", "2")],
            headers: &[
                ("Host", HOST),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ],
            payload_hash: EMPTY_SHA256,
        };
        assert_eq!(canonical_query(req.query), "max-keys=2&prefix=J");
        assert_eq!(
            signature_of(&authorization(ACCESS_KEY, &scope(), &req)),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn encoding_follows_the_sigv4_rules() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("AZaz09-._~", false), "AZaz09-._~");
        assert_eq!(
            canonical_query(&[("start-after", "p/0001"), ("list-type", "2")]),
            "list-type=2&start-after=p%2F0001"
        );
        assert_eq!(canonical_value("  a   b  "), "a b");
    }
}
