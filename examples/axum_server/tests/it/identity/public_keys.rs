//! Public keys: RS256 and ES256 keys verify their own tokens only, and a JWKS picks
//! the key by its `kid`.

use super::*;

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_and_a_key_confused_hs256_token_is_refused() {
    let rsa = JwtVerifier::public_key(
        &keys("rsa_public.pem"),
        Algorithm::RS256,
        &rules(None, None),
    )
    .expect("RSA verifier");
    let (app, campaign) = service(Identity::Jwt(rsa), RateLimits::default()).await;
    let rsa_key = EncodingKey::from_rsa_pem(&keys("rsa_private.pem")).expect("RSA key");
    let token = sign(
        Header::new(Algorithm::RS256),
        &claims("1", json!({})),
        &rsa_key,
    );
    let (status, body) = apply_with(&app, campaign, &token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The classic confusion: an HS256 token keyed with the public key's PEM.
    let confused = sign(
        Header::new(Algorithm::HS256),
        &claims("2", json!({})),
        &EncodingKey::from_secret(&keys("rsa_public.pem")),
    );
    assert_unauthorized(
        apply_with(&app, campaign, &confused).await,
        "HS256 on an RS256 key",
    );
    // A token of the EC key is not one of this service's.
    let ec_key = EncodingKey::from_ec_pem(&keys("ec_private.pem")).expect("EC key");
    let ec_token = sign(
        Header::new(Algorithm::ES256),
        &claims("3", json!({})),
        &ec_key,
    );
    assert_unauthorized(
        apply_with(&app, campaign, &ec_token).await,
        "ES256 on an RS256 key",
    );

    let ec = JwtVerifier::public_key(&keys("ec_public.pem"), Algorithm::ES256, &rules(None, None))
        .expect("EC verifier");
    let (app, campaign) = service(Identity::Jwt(ec), RateLimits::default()).await;
    let (status, body) = apply_with(&app, campaign, &ec_token).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_unauthorized(
        apply_with(&app, campaign, &token).await,
        "RS256 on an ES256 key",
    );
}

#[tokio::test]
async fn a_jwks_verifies_each_key_by_its_kid() {
    let jwks = String::from_utf8(keys("jwks.json")).expect("UTF-8");
    let verifier = JwtVerifier::jwks(&jwks, &rules(None, None)).expect("JWKS verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let rsa_key = EncodingKey::from_rsa_pem(&keys("rsa_private.pem")).expect("RSA key");
    let ec_key = EncodingKey::from_ec_pem(&keys("ec_private.pem")).expect("EC key");
    let with_kid = |algorithm, kid: &str| {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.into());
        header
    };
    let rsa = sign(
        with_kid(Algorithm::RS256, "rsa-1"),
        &claims("1", json!({})),
        &rsa_key,
    );
    let ec = sign(
        with_kid(Algorithm::ES256, "ec-1"),
        &claims("2", json!({})),
        &ec_key,
    );
    let no_kid = sign(
        Header::new(Algorithm::ES256),
        &claims("3", json!({})),
        &ec_key,
    );
    for (user, token) in [(1, rsa), (2, ec), (3, no_kid)] {
        let (status, body) = apply_with(&app, campaign, &token).await;
        assert_eq!(status, StatusCode::ACCEPTED, "user {user}: {body}");
    }
    let unknown = sign(
        with_kid(Algorithm::RS256, "rsa-2"),
        &claims("4", json!({})),
        &rsa_key,
    );
    assert_unauthorized(apply_with(&app, campaign, &unknown).await, "unknown kid");
    let swapped = sign(
        with_kid(Algorithm::RS256, "ec-1"),
        &claims("5", json!({})),
        &rsa_key,
    );
    assert_unauthorized(
        apply_with(&app, campaign, &swapped).await,
        "kid of another key",
    );
}
