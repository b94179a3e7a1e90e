//! Authentication: HS256 JWTs with `sub` and `exp` required and `role: "admin"`
//! for administrators. Only HS256 is accepted, whatever the token's header says.
//!
//! Tokens are minted with `jsonwebtoken`; they are checked here, on every
//! request, with the secret's HMAC keyed once at start. `jsonwebtoken::decode`
//! keys the HMAC again for every token and reads the header and the claims
//! twice each: it was over a third of the server's own instructions per order
//! placed. The checks are the same (the tests hold both to the same answers).

use std::borrow::Cow;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::AppState;
use super::error::ApiError;
use crate::domain::{UnixMillis, UserId};

/// Seconds of clock skew tolerated on `exp`.
const EXPIRY_LEEWAY_SECONDS: u64 = 5;

/// A token's claims: what tokens are minted with, and what a check reads
/// (borrowed from the decoded payload where they need no unescaping).
#[derive(Debug, Serialize, Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    exp: u64,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    role: Option<Cow<'a, str>>,
    /// No audience is configured, so a token meant for one is not for us;
    /// never minted.
    #[serde(default, skip_serializing)]
    aud: Option<serde::de::IgnoredAny>,
}

/// The header members a check reads; others are allowed and ignored.
#[derive(Deserialize)]
struct TokenHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

pub struct Auth {
    encoding: EncodingKey,
    /// HMAC-SHA256 keyed with the secret; each check clones it.
    mac: Hmac<Sha256>,
}

/// The header of every HS256 token that jsonwebtoken mints (and `Auth::token`
/// with it), `{"typ":"JWT","alg":"HS256"}` in base64url: a token that carries
/// it needs its header neither decoded nor parsed (a sixth of the check).
const HS256_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

impl Auth {
    pub fn new(secret: &str) -> Auth {
        Auth {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            mac: Hmac::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length"),
        }
    }

    /// A signed token for `sub`, valid for `ttl`.
    pub fn token(&self, sub: &str, admin: bool, ttl: std::time::Duration) -> String {
        let exp = UnixMillis::now().plus(ttl).0 / 1000;
        let claims = Claims {
            sub: Cow::Borrowed(sub),
            exp: exp as u64,
            role: admin.then_some(Cow::Borrowed("admin")),
            aud: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.check(token, UnixMillis::now())
    }

    /// The caller `token` names, if it is well formed, signed with our secret
    /// by HS256 and not expired at `now`; otherwise a 401 saying why not.
    fn check(&self, token: &str, now: UnixMillis) -> Result<Caller, ApiError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected three dot-separated parts"));
        };
        if header != HS256_HEADER {
            let header = URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| invalid("the header is not base64url"))?;
            let header: TokenHeader = serde_json::from_slice(&header)
                .map_err(|_| invalid("the header is not a JWT header"))?;
            if header.alg != "HS256" {
                return Err(invalid("only HS256 is accepted"));
            }
        }
        // An HS256 signature is 32 bytes; room for more so that a longer one
        // fails the comparison, not the decoding.
        let mut signature_bytes = [0u8; 64];
        let length = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut signature_bytes)
            .map_err(|_| invalid("the signature is not an HS256 signature in base64url"))?;
        let signed = &token.as_bytes()[..token.len() - signature.len() - 1];
        self.mac
            .clone()
            .chain_update(signed)
            .verify_slice(&signature_bytes[..length])
            .map_err(|_| invalid("bad signature"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("the claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| invalid("the claims need a string sub and a numeric exp"))?;
        let now_seconds = u64::try_from(now.0 / 1000).unwrap_or(0);
        if claims.exp < now_seconds.saturating_sub(EXPIRY_LEEWAY_SECONDS) {
            return Err(invalid("expired"));
        }
        if claims.aud.is_some() {
            return Err(invalid("meant for an audience"));
        }
        let user = UserId::parse(&claims.sub).map_err(|e| invalid(&e.to_string()))?;
        Ok(Caller {
            user,
            admin: claims.role.as_deref() == Some("admin"),
        })
    }
}

fn invalid(why: &str) -> ApiError {
    ApiError::unauthorized(format!("invalid token: {why}"))
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: UserId,
    pub admin: bool,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
        state.auth.verify(token.trim())
    }
}

/// An authenticated administrator.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.admin {
            return Err(ApiError::forbidden());
        }
        Ok(Admin(caller))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = "a secret";

    fn sign(header: &Header, claims: &Value, secret: &str) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn hs256(claims: Value) -> String {
        sign(&Header::new(Algorithm::HS256), &claims, SECRET)
    }

    fn now_seconds() -> u64 {
        (UnixMillis::now().0 / 1000) as u64
    }

    /// What `jsonwebtoken::decode` with the same requirements answers: the
    /// reference the check must agree with.
    fn reference(token: &str) -> Option<(String, bool)> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = EXPIRY_LEEWAY_SECONDS;
        #[derive(Deserialize)]
        struct Owned {
            sub: String,
            /// Read so that a token without a numeric `exp` fails here too.
            #[serde(rename = "exp")]
            _exp: u64,
            role: Option<String>,
        }
        let data = jsonwebtoken::decode::<Owned>(
            token,
            &DecodingKey::from_secret(SECRET.as_bytes()),
            &validation,
        )
        .ok()?;
        UserId::parse(&data.claims.sub).ok()?;
        Some((
            data.claims.sub,
            data.claims.role.as_deref() == Some("admin"),
        ))
    }

    fn checked(token: &str) -> Option<(String, bool)> {
        let caller = Auth::new(SECRET).check(token, UnixMillis::now()).ok()?;
        Some((caller.user.as_str().to_string(), caller.admin))
    }

    #[test]
    fn minted_tokens_name_their_caller() {
        let auth = Auth::new(SECRET);
        let ttl = std::time::Duration::from_secs(60);
        let user = auth.verify(&auth.token("alice", false, ttl)).unwrap();
        assert_eq!((user.user.as_str(), user.admin), ("alice", false));
        let admin = auth.verify(&auth.token("root", true, ttl)).unwrap();
        assert_eq!((admin.user.as_str(), admin.admin), ("root", true));
        assert!(
            Auth::new("another secret")
                .verify(&auth.token("alice", false, ttl))
                .is_err()
        );
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        let auth = Auth::new(SECRET);
        let token = hs256(json!({"sub": "alice", "exp": 1_000}));
        let at = |seconds: i64| UnixMillis(seconds * 1000);
        assert!(auth.check(&token, at(999)).is_ok());
        assert!(
            auth.check(&token, at(1_000 + EXPIRY_LEEWAY_SECONDS as i64))
                .is_ok()
        );
        let late = auth.check(&token, at(1_001 + EXPIRY_LEEWAY_SECONDS as i64));
        let late = late.unwrap_err();
        assert_eq!((late.status.as_u16(), late.code), (401, "unauthorized"));
        assert_eq!(late.detail, "invalid token: expired");
    }

    /// Minted tokens, and jsonwebtoken's HS256 tokens, take the path that
    /// skips decoding the header.
    #[test]
    fn minted_tokens_carry_the_known_header() {
        let minted = Auth::new(SECRET).token("alice", false, std::time::Duration::from_secs(60));
        let by_jsonwebtoken = hs256(json!({"sub": "alice", "exp": now_seconds() + 60}));
        for token in [minted, by_jsonwebtoken] {
            assert_eq!(token.split('.').next(), Some(HS256_HEADER));
        }
    }

    #[test]
    fn refuses_what_the_reference_refuses() {
        let exp = now_seconds() + 600;
        let claims = json!({"sub": "alice", "exp": exp});
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let good = hs256(claims.clone());
        // Signed with the secret by HS256, but its header names another algorithm.
        let lying = {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes())
                .unwrap()
                .chain_update(&signed)
                .finalize();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.into_bytes()))
        };
        let cases = [
            ("header naming HS512", lying),
            ("alg none", unsigned),
            (
                "HS384",
                sign(&Header::new(Algorithm::HS384), &claims, SECRET),
            ),
            (
                "wrong secret",
                sign(&Header::new(Algorithm::HS256), &claims, "other"),
            ),
            ("no sub", hs256(json!({"exp": exp}))),
            ("no exp", hs256(json!({"sub": "alice"}))),
            (
                "exp as text",
                hs256(json!({"sub": "alice", "exp": exp.to_string()})),
            ),
            ("sub as number", hs256(json!({"sub": 7, "exp": exp}))),
            ("empty sub", hs256(json!({"sub": "", "exp": exp}))),
            (
                "an audience",
                hs256(json!({"sub": "alice", "exp": exp, "aud": "shop"})),
            ),
            (
                "expired",
                hs256(json!({"sub": "alice", "exp": exp - 3_600})),
            ),
            ("four parts", format!("{good}.x")),
            ("two parts", good[..good.rfind('.').unwrap()].to_string()),
            ("padded signature", format!("{good}=")),
            ("empty", String::new()),
        ];
        for (name, token) in cases {
            assert_eq!(reference(&token), None, "{name}: the reference refuses it");
            assert_eq!(checked(&token), None, "{name}");
        }
        assert_eq!(checked(&good), Some(("alice".to_string(), false)));
        assert_eq!(checked(&good), reference(&good));
    }

    proptest! {
        /// Any token, and any one-character change to it, gets the same answer
        /// from the check as from `jsonwebtoken::decode`.
        #[test]
        fn agrees_with_jsonwebtoken(
            sub in "\\PC{0,130}",
            ahead in prop_oneof![-3_600i64..-8, -3i64..3_600],
            role in proptest::option::of(prop_oneof![Just("admin".to_string()), "\\PC{0,8}"]),
            extra in proptest::option::of(("[a-z]{1,6}", any::<u32>())),
            position in any::<prop::sample::Index>(),
            replacement in prop::sample::select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/".chars().collect::<Vec<_>>()),
        ) {
            let mut claims = json!({"sub": sub, "exp": now_seconds() as i64 + ahead});
            if let Some(role) = role {
                claims["role"] = json!(role);
            }
            if let Some((name, value)) = extra && name != "aud" {
                claims[name] = json!(value);
            }
            let token = hs256(claims);
            prop_assert_eq!(checked(&token), reference(&token));
            let mut changed: Vec<char> = token.chars().collect();
            changed[position.index(token.len())] = replacement;
            let changed: String = changed.into_iter().collect();
            prop_assert_eq!(checked(&changed), reference(&changed));
        }
    }
}
