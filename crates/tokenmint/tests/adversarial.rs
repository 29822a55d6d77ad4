//! Adversarial, table-driven tests of token verification over HTTP: each row is a hostile (or boundary) token, the status and code it must get, and the audit reason it must leave.
//!
//! The server, the local OIDC issuer and the GitHub stand-in are the real
//! ones (`tests/common`). A second dev issuer supplies a foreign key, and a
//! tiny JWKS server in this file supplies keys the dev issuer never
//! publishes: RSA keys whose `alg`/`use` disagree with the token, and a
//! P-256 key for an `ES256` issuer. Every denied row also checks that GitHub
//! issued nothing and that exactly one `deny` audit row was written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{Harness, AUD};
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokenmint::audit::Decision;
use tokenmint::clock::Clock as _;
use tokenmint::dev::issuer::{DevIssuer, IssuerConfig};
use tokenmint::http::ServeOptions;
use tokenmint::keys::RsaSigningKey;

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

const CUSTOM_ISS: &str = "https://custom-rsa.example";
const ES_ISS: &str = "https://es.example";

/// A tiny JWKS server: `/rsa/jwks` and `/es/jwks` for the two extra
/// issuers, `/attacker/jwks` for header-injection rows (which must never be
/// fetched). Counts every request per path.
struct KeyServer {
    url: String,
    hits: Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl KeyServer {
    async fn spawn(rsa: Value, es: Value, attacker: Value) -> Self {
        use axum::extract::{Path, State};
        type Shared = (
            Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
            Arc<Map<String, Value>>,
        );
        let hits = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let docs: Map<String, Value> = [
            ("rsa".to_owned(), rsa),
            ("es".to_owned(), es),
            ("attacker".to_owned(), attacker),
        ]
        .into_iter()
        .collect();
        let app = axum::Router::new()
            .route(
                "/{which}/jwks",
                axum::routing::get(
                    |State((hits, docs)): State<Shared>, Path(which): Path<String>| async move {
                        *hits.lock().unwrap().entry(which.clone()).or_insert(0) += 1;
                        axum::Json(docs.get(&which).cloned().unwrap_or(Value::Null))
                    },
                ),
            )
            .with_state((hits.clone(), Arc::new(docs)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            hits,
            _task: task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    fn hits_on(&self, which: &str) -> usize {
        self.hits.lock().unwrap().get(which).copied().unwrap_or(0)
    }
}

/// Everything the token builders need.
struct World {
    h: Harness,
    /// A second configured issuer, `dev2`, with its own key.
    dev2: DevIssuer,
    keys: KeyServer,
    /// Signs for the custom RSA issuer (published under several kids).
    custom: RsaSigningKey,
    /// Signs for the ES256 issuer.
    ec: EcdsaKeyPair,
    /// Never published by any configured issuer.
    attacker: RsaSigningKey,
}

fn rsa_jwk(key: &RsaSigningKey, kid: &str, alg: Option<&str>, use_: Option<&str>) -> Value {
    let mut jwk = serde_json::to_value(key.public_jwk()).unwrap();
    let o = jwk.as_object_mut().unwrap();
    o.insert("kid".into(), json!(kid));
    o.remove("alg");
    o.remove("use");
    if let Some(a) = alg {
        o.insert("alg".into(), json!(a));
    }
    if let Some(u) = use_ {
        o.insert("use".into(), json!(u));
    }
    jwk
}

impl World {
    async fn start() -> Self {
        let dev2 = DevIssuer::spawn(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            IssuerConfig::new("request-token-2"),
        )
        .await
        .unwrap();
        let custom = RsaSigningKey::generate().unwrap();
        let attacker = RsaSigningKey::generate().unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = ec.public_key().as_ref();
        let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        let keys = KeyServer::spawn(
            json!({"keys": [
                rsa_jwk(&custom, "plain", None, Some("sig")),
                rsa_jwk(&custom, "alg-rs512", Some("RS512"), Some("sig")),
                rsa_jwk(&custom, "use-enc", Some("RS256"), Some("enc")),
            ]}),
            json!({"keys": [ec_jwk]}),
            json!({"keys": [rsa_jwk(&attacker, "attacker", Some("RS256"), Some("sig"))]}),
        )
        .await;
        let extra = format!(
            r#"
[[issuer]]
name = "dev2"
url = "{dev2}"
audiences = ["{AUD}"]
[[issuer]]
name = "custom-rsa"
url = "{CUSTOM_ISS}"
audiences = ["{AUD}"]
algorithms = ["RS256", "PS256"]
jwks_url = "{keys}/rsa/jwks"
[[issuer]]
name = "es"
url = "{ES_ISS}"
audiences = ["{AUD}"]
algorithms = ["ES256"]
jwks_url = "{keys}/es/jwks"

[[broker]]
name = "custom-read"
issuer = "custom-rsa"
repository = "acme/widgets"
permissions = {{ contents = "read" }}
[broker.claims]
repository_id = "123456789"

[[broker]]
name = "es-read"
issuer = "es"
repository = "acme/widgets"
permissions = {{ contents = "read" }}
[broker.claims]
repository_id = "123456789"
"#,
            dev2 = dev2.issuer_url(),
            keys = keys.url,
        );
        let h = Harness::with_extra_config(false, ServeOptions::default(), &extra).await;
        Self {
            h,
            dev2,
            keys,
            custom,
            ec,
            attacker,
        }
    }

    fn now(&self) -> i64 {
        self.h.clock.now().unix_timestamp()
    }

    fn dev_key(&self) -> RsaSigningKey {
        self.h.issuer.current_key()
    }

    /// Valid claims for `iss` at the service's time, with `overrides` merged
    /// (a `null` override removes the claim).
    fn claims(&self, iss: &str, overrides: Value) -> Map<String, Value> {
        let t = self.now();
        let mut c = self.h.issuer.claims_template();
        c.insert("iss".into(), json!(iss));
        c.insert("aud".into(), json!(AUD));
        c.insert("iat".into(), json!(t));
        c.insert("nbf".into(), json!(t));
        c.insert("exp".into(), json!(t + 300));
        if let Value::Object(o) = overrides {
            for (k, v) in o {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        c
    }

    fn dev_claims(&self, overrides: Value) -> Map<String, Value> {
        self.claims(&self.h.issuer.issuer_url(), overrides)
    }

    /// A dev-issuer token signed (RS256) by the dev key with header `header`.
    fn dev_signed(&self, header: Value, overrides: Value) -> String {
        rs256(&self.dev_key(), &header, &self.dev_claims(overrides))
    }

    /// A normal dev-issuer token with claim overrides.
    fn dev_token(&self, overrides: Value) -> String {
        let key = self.dev_key();
        self.dev_signed(
            json!({"alg": "RS256", "typ": "JWT", "kid": key.kid()}),
            overrides,
        )
    }

    fn es_token(&self, header: Value, signature: Option<Vec<u8>>) -> String {
        let claims = self.claims(ES_ISS, json!({}));
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        let sig = signature.unwrap_or_else(|| {
            self.ec
                .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        });
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Every key fetch anywhere: both dev issuers (discovery and JWKS) and
    /// the tiny key server.
    fn fetches(&self) -> usize {
        self.h.issuer.jwks_fetch_count()
            + self.h.issuer.discovery_fetch_count()
            + self.dev2.jwks_fetch_count()
            + self.dev2.discovery_fetch_count()
            + self.keys.hits()
    }
}

/// Signs `header` and `claims` as given, with an RS256 signature whatever the header says.
fn rs256(key: &RsaSigningKey, header: &Value, claims: &Map<String, Value>) -> String {
    key.sign_raw(
        &serde_json::to_vec(header).unwrap(),
        &serde_json::to_vec(claims).unwrap(),
    )
    .unwrap()
}

/// A compact JWS over raw header and payload bytes with an HMAC-SHA-256 tag keyed by `secret`.
fn hs256(header: &[u8], payload: &[u8], secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// The RSA public key as SubjectPublicKeyInfo, DER and PEM.
fn spki(key: &RsaSigningKey) -> (Vec<u8>, String) {
    use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
    let jwk = key.public_jwk();
    let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(&jwk.n).unwrap());
    let e = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(&jwk.e).unwrap());
    let public = rsa::RsaPublicKey::new(n, e).unwrap();
    let der = public.to_public_key_der().unwrap().as_bytes().to_vec();
    let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    (der, pem)
}

/// Replaces part `i` (0, 1, 2) of a compact token.
fn with_part(token: &str, i: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[i] = part;
    parts.join(".")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 401 `invalid_token`, with this fragment in the audit reason.
    Invalid(&'static str),
    /// 400 `invalid_request` (the bearer credential itself is malformed),
    /// with this fragment in the audit reason.
    BadRequest(&'static str),
    /// 200 and a minted token: the boundary's allowed side, or a positive
    /// control proving the setup works.
    Allowed,
    /// Refused by the HTTP layer with this status before any handler ran:
    /// no audit row, no fetch.
    HttpLayer(u16),
}

/// Whether the row fails before key lookup, so must cause no key fetch at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    Never,
    Allowed,
}

struct Row {
    name: &'static str,
    broker: &'static str,
    token: String,
    expect: Expect,
    fetch: Fetch,
}

fn row(name: &'static str, token: String, expect: Expect, fetch: Fetch) -> Row {
    Row {
        name,
        broker: "widgets-read",
        token,
        expect,
        fetch,
    }
}

fn rows(w: &World) -> Vec<Row> {
    use Expect::{Allowed, BadRequest, HttpLayer, Invalid};
    use Fetch::{Allowed as MayFetch, Never};
    let t = w.now();
    let dev = w.dev_key();
    let kid = dev.kid().to_owned();
    let iss = w.h.issuer.issuer_url();
    let good = w.dev_token(json!({}));
    let good_sig = good.rsplit('.').next().unwrap().to_owned();
    let claims_json = serde_json::to_vec(&w.dev_claims(json!({}))).unwrap();
    let mut out = Vec::new();

    // alg none, in several casings, with and without a signature part.
    const NONE: &str = "(unsigned tokens) is never accepted";
    for (name, alg) in [
        ("alg none", "none"),
        ("alg None", "None"),
        ("alg NONE", "NONE"),
        ("alg nOnE", "nOnE"),
    ] {
        let t = w.dev_signed(json!({"alg": alg, "typ": "JWT", "kid": kid}), json!({}));
        out.push(row(name, t, Invalid(NONE), Never));
    }
    // A multi-byte character across the `HS` prefix check once panicked the
    // exchange (found by the jose_parse fuzz target).
    for (name, alg) in [
        ("alg with a multi-byte character at byte 1", "n\u{5db}e"),
        ("alg of one multi-byte character", "\u{5db}"),
    ] {
        let t = w.dev_signed(json!({"alg": alg, "typ": "JWT", "kid": kid}), json!({}));
        out.push(row(name, t, Invalid("unsupported algorithm"), Never));
    }
    let unsigned = {
        let t = w.dev_signed(json!({"alg": "none"}), json!({}));
        let (input, _) = t.rsplit_once('.').unwrap();
        format!("{input}.")
    };
    out.push(row(
        "alg none, empty signature",
        unsigned,
        Invalid("not a compact JWS"),
        Never,
    ));

    // HS256 keyed with the RSA public key, in every form it is published in.
    const HS: &str = "is symmetric and is never accepted";
    let jwk_bytes = serde_json::to_vec(&dev.public_jwk()).unwrap();
    let (der, pem) = spki(&dev);
    let hs_header = serde_json::to_vec(&json!({"alg": "HS256", "typ": "JWT", "kid": kid})).unwrap();
    for (name, secret) in [
        ("HS256 keyed with the public JWK JSON", jwk_bytes.clone()),
        ("HS256 keyed with the public key PEM", pem.into_bytes()),
        ("HS256 keyed with the public key DER", der),
        (
            "HS256 keyed with the modulus bytes",
            URL_SAFE_NO_PAD.decode(dev.public_jwk().n).unwrap(),
        ),
    ] {
        out.push(row(
            name,
            hs256(&hs_header, &claims_json, &secret),
            Invalid(HS),
            Never,
        ));
    }
    let lower = serde_json::to_vec(&json!({"alg": "hs256", "kid": kid})).unwrap();
    out.push(row(
        "hs256 (lower case) keyed with the public JWK JSON",
        hs256(&lower, &claims_json, &jwk_bytes),
        Invalid(HS),
        Never,
    ));

    // A kid from another configured issuer.
    let dev2_key = w.dev2.current_key();
    out.push(row(
        "kid of issuer dev2's key, iss dev, signed by dev2",
        rs256(
            &dev2_key,
            &json!({"alg": "RS256", "kid": dev2_key.kid()}),
            &w.dev_claims(json!({})),
        ),
        Invalid("issuer has no key with kid"),
        MayFetch,
    ));
    out.push(row(
        "kid of issuer dev's key, iss dev2, signed by dev",
        rs256(
            &dev,
            &json!({"alg": "RS256", "kid": kid}),
            &w.claims(&w.dev2.issuer_url(), json!({})),
        ),
        Invalid("issuer has no key with kid"),
        MayFetch,
    ));

    // Key hints in the header, pointing at an attacker's key.
    let attacker_jwk = serde_json::to_value(w.attacker.public_jwk()).unwrap();
    let jku = format!("{}/attacker/jwks", w.keys.url);
    for (name, header) in [
        (
            "jku to attacker JWKS, attacker kid",
            json!({"alg": "RS256", "kid": "attacker", "jku": jku}),
        ),
        (
            "x5u to attacker URL, attacker kid",
            json!({"alg": "RS256", "kid": "attacker", "x5u": jku}),
        ),
        (
            "embedded jwk, attacker kid",
            json!({"alg": "RS256", "kid": "attacker", "jwk": attacker_jwk}),
        ),
        (
            "x5c with attacker cert, attacker kid",
            json!({"alg": "RS256", "kid": "attacker", "x5c": [STANDARD.encode(b"attacker certificate")]}),
        ),
    ] {
        out.push(row(
            name,
            rs256(&w.attacker, &header, &w.dev_claims(json!({}))),
            Invalid("issuer has no key with kid \"attacker\""),
            MayFetch,
        ));
    }
    out.push(row(
        "jku + jwk with the issuer's kid, signed by attacker",
        rs256(
            &w.attacker,
            &json!({"alg": "RS256", "kid": kid, "jku": jku, "jwk": attacker_jwk}),
            &w.dev_claims(json!({})),
        ),
        Invalid("signature does not verify"),
        MayFetch,
    ));
    out.push(row(
        "jwk without kid, signed by attacker",
        rs256(
            &w.attacker,
            &json!({"alg": "RS256", "jwk": attacker_jwk}),
            &w.dev_claims(json!({})),
        ),
        Invalid("signature does not verify"),
        MayFetch,
    ));

    // Other header rules.
    out.push(row(
        "crit [exp]",
        w.dev_signed(
            json!({"alg": "RS256", "kid": kid, "crit": ["exp"]}),
            json!({}),
        ),
        Invalid("`crit` is present"),
        Never,
    ));
    out.push(row(
        "cty JWT (nested token)",
        w.dev_signed(json!({"alg": "RS256", "kid": kid, "cty": "JWT"}), json!({})),
        Invalid("`cty` is present"),
        Never,
    ));
    out.push(row(
        "typ at+jwt",
        w.dev_signed(
            json!({"alg": "RS256", "kid": kid, "typ": "at+jwt"}),
            json!({}),
        ),
        Invalid("`typ` must be absent"),
        Never,
    ));

    // Duplicate members: the second `sub` is the allowed one.
    {
        let mut c = w.dev_claims(json!({}));
        let allowed_sub = c.remove("sub").unwrap();
        let rest = serde_json::to_string(&c).unwrap();
        let payload = format!(
            "{{\"sub\":\"repo:evil/app:ref:refs/heads/main\",\"sub\":{allowed_sub},{}",
            &rest[1..]
        );
        let header = serde_json::to_vec(&json!({"alg": "RS256", "kid": kid})).unwrap();
        out.push(row(
            "duplicate sub (second allowed)",
            dev.sign_raw(&header, payload.as_bytes()).unwrap(),
            Invalid("duplicate key \"sub\""),
            Never,
        ));
        let header = format!("{{\"alg\":\"RS256\",\"kid\":\"{kid}\",\"alg\":\"none\"}}");
        out.push(row(
            "duplicate alg in header",
            dev.sign_raw(header.as_bytes(), &claims_json).unwrap(),
            Invalid("duplicate key \"alg\""),
            Never,
        ));
    }

    // Non-canonical base64url.
    const B64: &str = "is not canonical unpadded base64url";
    let sig_bytes = URL_SAFE_NO_PAD.decode(&good_sig).unwrap();
    out.push(row(
        "padded signature",
        with_part(&good, 2, &URL_SAFE.encode(&sig_bytes)),
        Invalid(B64),
        Never,
    ));
    let std_sig = STANDARD_NO_PAD.encode(&sig_bytes);
    assert_ne!(std_sig, good_sig, "the signature has a - or _ in practice");
    out.push(row(
        "signature in the standard alphabet (+ and /)",
        with_part(&good, 2, &std_sig),
        Invalid(B64),
        Never,
    ));
    {
        // 256 bytes are 342 characters carrying 2052 bits: the last character's
        // low 4 bits must be zero.
        let mut chars: Vec<char> = good_sig.chars().collect();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = *chars.last().unwrap();
        let v = alphabet.find(last).unwrap();
        assert_eq!(v & 0xF, 0);
        *chars.last_mut().unwrap() = alphabet.as_bytes()[v | 1] as char;
        out.push(row(
            "signature with non-zero trailing bits",
            with_part(&good, 2, &chars.into_iter().collect::<String>()),
            Invalid(B64),
            Never,
        ));
    }
    {
        let header_part = good.split('.').next().unwrap();
        out.push(row(
            "whitespace inside the header part",
            with_part(
                &good,
                0,
                &format!("{} {}", &header_part[..4], &header_part[4..]),
            ),
            BadRequest("the token is not a bearer token"),
            Never,
        ));
    }

    // Size.
    out.push(row(
        "token over 16 KiB",
        w.dev_token(json!({"pad": "x".repeat(16 * 1024)})),
        Invalid("the limit is 16384"),
        Never,
    ));
    out.push(row(
        "1 MiB token",
        w.dev_token(json!({"pad": "x".repeat(768 * 1024)})),
        HttpLayer(431),
        Never,
    ));

    // Audience.
    out.push(row(
        "aud array with the right audience among others",
        w.dev_token(json!({"aud": ["https://github.com/acme", AUD, "sts.amazonaws.com"]})),
        Allowed,
        MayFetch,
    ));
    out.push(row(
        "aud empty array",
        w.dev_token(json!({"aud": []})),
        Invalid("claim aud is invalid: must be a string or a non-empty array"),
        MayFetch,
    ));
    out.push(row(
        "aud array with a non-string",
        w.dev_token(json!({"aud": [AUD, 1]})),
        Invalid("claim aud is invalid: array members must be strings"),
        MayFetch,
    ));
    out.push(row(
        "aud array without the right audience",
        w.dev_token(json!({"aud": ["sts.amazonaws.com", "tokenmint-staging"]})),
        Invalid("is not accepted; request the token with audience"),
        MayFetch,
    ));
    out.push(row(
        "aud a different case",
        w.dev_token(json!({"aud": AUD.to_uppercase()})),
        Invalid("is not accepted; request the token with audience"),
        MayFetch,
    ));

    // Issuer spelling.
    const ISS: &str = "is not accepted here";
    for (name, variant) in [
        ("iss with a trailing slash", format!("{iss}/")),
        ("iss upper-case scheme", iss.replacen("http", "HTTP", 1)),
        (
            "iss with a homoglyph (U+2024 for .)",
            iss.replacen('.', "\u{2024}", 1),
        ),
        (
            "iss with a homoglyph (fullwidth 1)",
            iss.replacen('1', "\u{ff11}", 1),
        ),
        ("iss with a trailing space", format!("{iss} ")),
    ] {
        out.push(row(
            name,
            w.dev_token(json!({"iss": variant})),
            Invalid(ISS),
            Never,
        ));
    }
    out.push(row(
        "iss missing",
        w.dev_token(json!({"iss": null})),
        Invalid("token has no string iss claim"),
        Never,
    ));

    // Time boundaries (leeway 60 s, max age 900 s, max lifetime 21600 s).
    let time_rows: Vec<(&'static str, Value, Expect)> = vec![
        (
            "exp = now - leeway",
            json!({"iat": t - 120, "nbf": t - 120, "exp": t - 60}),
            Invalid("token expired at"),
        ),
        (
            "exp = now - leeway + 1",
            json!({"iat": t - 120, "nbf": t - 120, "exp": t - 59}),
            Allowed,
        ),
        ("nbf = now + leeway", json!({"nbf": t + 60}), Allowed),
        (
            "nbf = now + leeway + 1",
            json!({"nbf": t + 61}),
            Invalid("is not valid before"),
        ),
        ("iat = now + leeway", json!({"iat": t + 60}), Allowed),
        (
            "iat = now + leeway + 1",
            json!({"iat": t + 61}),
            Invalid("issued in the future"),
        ),
        (
            "iat = now - max age",
            json!({"iat": t - 900, "nbf": t - 900}),
            Allowed,
        ),
        (
            "iat = now - max age - 1",
            json!({"iat": t - 901, "nbf": t - 901}),
            Invalid("s old; the limit is 900 s"),
        ),
        (
            "exp - iat = max lifetime",
            json!({"exp": t + 21_600}),
            Allowed,
        ),
        (
            "exp - iat = max lifetime + 1",
            json!({"exp": t + 21_601}),
            Invalid("exceeds the limit of 21600 s"),
        ),
        (
            "exp = i64::MAX",
            json!({"exp": i64::MAX}),
            Invalid("exceeds the limit of 21600 s"),
        ),
        (
            "exp = u64::MAX (not an i64)",
            json!({"exp": u64::MAX}),
            Invalid("claim exp is invalid: must be an integer NumericDate"),
        ),
        (
            "exp negative",
            json!({"exp": -1}),
            Invalid("token expired at -1"),
        ),
        (
            "exp a float",
            json!({"exp": (t + 300) as f64 + 0.5}),
            Invalid("claim exp is invalid: must be an integer NumericDate"),
        ),
        (
            "exp a whole float",
            json!({"exp": (t + 300) as f64}),
            Invalid("claim exp is invalid: must be an integer NumericDate"),
        ),
        (
            "exp a string",
            json!({"exp": (t + 300).to_string()}),
            Invalid("claim exp is invalid: must be a number"),
        ),
        (
            "exp missing",
            json!({"exp": null}),
            Invalid("token has no exp claim"),
        ),
        (
            "iat = i64::MIN",
            json!({"iat": i64::MIN}),
            Invalid("s old; the limit is 900 s"),
        ),
        (
            "iat negative",
            json!({"iat": -1}),
            Invalid("s old; the limit is 900 s"),
        ),
        (
            "iat = i64::MAX",
            json!({"iat": i64::MAX}),
            Invalid("issued in the future"),
        ),
        (
            "iat a string",
            json!({"iat": t.to_string()}),
            Invalid("claim iat is invalid: must be a number"),
        ),
        (
            "nbf = i64::MAX",
            json!({"nbf": i64::MAX}),
            Invalid("is not valid before"),
        ),
        (
            "nbf a float",
            json!({"nbf": t as f64 + 0.5}),
            Invalid("claim nbf is invalid: must be an integer NumericDate"),
        ),
    ];
    for (name, overrides, expect) in time_rows {
        out.push(row(name, w.dev_token(overrides), expect, MayFetch));
    }

    // Algorithm confusion within RSA.
    out.push(row(
        "RS256 signature, PS256 header, issuer allows only RS256",
        w.dev_signed(json!({"alg": "PS256", "kid": kid}), json!({})),
        Invalid("algorithm PS256 is not allowed for issuer \"dev\""),
        Never,
    ));
    let custom_claims = w.claims(CUSTOM_ISS, json!({}));
    let custom_rows = [
        (
            "custom issuer: valid RS256 (positive control)",
            json!({"alg": "RS256", "kid": "plain"}),
            Allowed,
        ),
        (
            "RS256 signature, PS256 header, issuer allows PS256",
            json!({"alg": "PS256", "kid": "plain"}),
            Invalid("signature does not verify with key plain"),
        ),
        (
            "JWK alg RS512, header RS256",
            json!({"alg": "RS256", "kid": "alg-rs512"}),
            Invalid("key alg-rs512 is for alg RS512, but the token says RS256"),
        ),
        (
            "JWK use enc, header RS256",
            json!({"alg": "RS256", "kid": "use-enc"}),
            Invalid("key use-enc has use \"enc\", not \"sig\""),
        ),
        (
            "custom issuer: no kid, several keys",
            json!({"alg": "RS256"}),
            Invalid("token has no kid and the issuer publishes several keys"),
        ),
    ];
    for (name, header, expect) in custom_rows {
        out.push(Row {
            name,
            broker: "custom-read",
            token: rs256(&w.custom, &header, &custom_claims),
            expect,
            fetch: MayFetch,
        });
    }

    // ECDSA (ES256 issuer).
    let es_header = json!({"alg": "ES256", "typ": "JWT", "kid": "ec1"});
    let valid_es = w.es_token(es_header.clone(), None);
    let valid_es_sig = URL_SAFE_NO_PAD
        .decode(valid_es.rsplit('.').next().unwrap())
        .unwrap();
    let n_n: Vec<u8> = [P256_N, P256_N].concat();
    let es_rows = [
        ("ES256 valid (positive control)", valid_es, Allowed),
        (
            "ES256 r = s = 0 (CVE-2022-21449)",
            w.es_token(es_header.clone(), Some(vec![0; 64])),
            Invalid("signature does not verify with key ec1"),
        ),
        (
            "ES256 r = s = n",
            w.es_token(es_header.clone(), Some(n_n)),
            Invalid("signature does not verify with key ec1"),
        ),
        (
            "ES256 signature DER-encoded instead of r || s",
            w.es_token(es_header.clone(), Some(der_ecdsa(&valid_es_sig))),
            Invalid("signature does not verify with key ec1"),
        ),
        (
            "ES256 signature truncated to 63 bytes",
            w.es_token(es_header.clone(), Some(valid_es_sig[..63].to_vec())),
            Invalid("signature does not verify with key ec1"),
        ),
        (
            "RS256 token at the ES256-only issuer",
            rs256(
                &w.custom,
                &json!({"alg": "RS256", "kid": "ec1"}),
                &w.claims(ES_ISS, json!({})),
            ),
            Invalid("algorithm RS256 is not allowed for issuer \"es\""),
        ),
    ];
    for (name, token, expect) in es_rows {
        out.push(Row {
            name,
            broker: "es-read",
            token,
            expect,
            fetch: MayFetch,
        });
    }
    out
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` for a fixed-width `r || s`.
fn der_ecdsa(fixed: &[u8]) -> Vec<u8> {
    fn int(v: &[u8]) -> Vec<u8> {
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        let mut body = if v.first().is_some_and(|b| b & 0x80 != 0) {
            vec![0]
        } else {
            Vec::new()
        };
        body.extend_from_slice(&v);
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    }
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let mut seq = int(r);
    seq.extend(int(s));
    let mut out = vec![0x30, seq.len() as u8];
    out.extend(seq);
    out
}

/// Posts `token` raw; a transport error (the server hung up on an
/// oversized request) is reported as status 0.
async fn post(w: &World, broker: &str, token: &str) -> (u16, Value) {
    let resp =
        w.h.client
            .post(format!("{}/v1/brokers/{broker}/token", w.h.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await;
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
            (status, body)
        }
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test]
async fn hostile_tokens_are_refused_and_audited() {
    let w = World::start().await;
    // Warm every issuer's key cache with a good exchange, so "no fetch" rows
    // are not confused with first use (and to prove each issuer works).
    for (broker, token) in [
        ("widgets-read", w.dev_token(json!({}))),
        (
            "custom-read",
            rs256(
                &w.custom,
                &json!({"alg": "RS256", "kid": "plain"}),
                &w.claims(CUSTOM_ISS, json!({})),
            ),
        ),
        (
            "es-read",
            w.es_token(json!({"alg": "ES256", "kid": "ec1"}), None),
        ),
    ] {
        let (s, b) = post(&w, broker, &token).await;
        assert_eq!(s, 200, "warm-up {broker}: {b}");
    }

    let table = rows(&w);
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for r in &table {
        let rows_before = w.h.rows().await.len();
        let issued_before = w.h.github.issued_tokens().len();
        let fetches_before = w.fetches();
        let (status, body) = post(&w, r.broker, &r.token).await;
        let rows_after = w.h.rows().await;
        let issued_after = w.h.github.issued_tokens().len();
        let fetched = w.fetches() - fetches_before;
        let new_rows = &rows_after[rows_before..];

        let mut problems = Vec::new();
        match r.expect {
            Expect::Invalid(fragment) | Expect::BadRequest(fragment) => {
                let (want, code) = match r.expect {
                    Expect::BadRequest(_) => (400, "invalid_request"),
                    _ => (401, "invalid_token"),
                };
                if status != want || body["error"] != code {
                    problems.push(format!("got {status} {body}"));
                }
                if issued_after != issued_before {
                    problems.push("GitHub issued a token".into());
                }
                match new_rows {
                    [one] => {
                        if one.record.decision != Decision::Deny || one.record.status != want {
                            problems.push(format!(
                                "audit row {:?} {}",
                                one.record.decision, one.record.status
                            ));
                        }
                        if !one.record.reason.contains(fragment) {
                            problems.push(format!(
                                "audit reason {:?} lacks {fragment:?}",
                                one.record.reason
                            ));
                        }
                    }
                    _ => problems.push(format!("{} audit rows", new_rows.len())),
                }
            }
            Expect::Allowed => {
                if status != 200 || body["token"].as_str().is_none() {
                    problems.push(format!("got {status} {body}"));
                }
                if issued_after != issued_before + 1 {
                    problems.push("GitHub did not issue exactly one token".into());
                }
                if !matches!(new_rows, [one] if one.record.decision == Decision::Allow) {
                    problems.push(format!("{} audit rows, not one allow", new_rows.len()));
                }
            }
            Expect::HttpLayer(want) => {
                if status != want {
                    problems.push(format!("got {status} {body}"));
                }
                if issued_after != issued_before {
                    problems.push("GitHub issued a token".into());
                }
                if !new_rows.is_empty() {
                    problems.push(format!("{} audit rows", new_rows.len()));
                }
            }
        }
        if r.fetch == Fetch::Never && fetched != 0 {
            problems.push(format!("{fetched} key fetches"));
        }
        let reason = new_rows
            .first()
            .map(|x| x.record.reason.clone())
            .unwrap_or_else(|| "(no audit row)".into());
        report.push(format!(
            "| {} | {} | {status} | {} |",
            r.name,
            r.token.len(),
            reason.replace('|', "\\|")
        ));
        if !problems.is_empty() {
            failures.push(format!("{}: {}", r.name, problems.join("; ")));
        }
    }
    eprintln!("| case | token bytes | status | audit reason |\n|---|---|---|---|");
    for line in &report {
        eprintln!("{line}");
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    // Header key hints were never followed.
    assert_eq!(
        w.keys.hits_on("attacker"),
        0,
        "the attacker's jku was fetched"
    );
    assert!(table.len() >= 60, "{} rows", table.len());
}
