//! HS256 tokens: a user applies and reads a coupon only as themselves, and forged,
//! expired, early, misaddressed, unsigned or too long-lived tokens are refused.

use super::*;

#[tokio::test]
async fn an_hs256_user_applies_as_themselves_and_reads_only_their_own_coupon() {
    let verifier = JwtVerifier::hs256(SECRET, &rules(None, None)).expect("verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let alice = hs256(&claims("1", json!({})));
    let bob = hs256(&claims("2", json!({})));

    let (status, body) = apply_with(&app, campaign, &alice).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rank"], 1);
    // The body may name the caller, never someone else.
    let bearer = format!("Bearer {bob}");
    let uri = format!("/campaigns/{campaign}/apply");
    let auth = [("authorization", bearer.as_str())];
    let (status, body) = send(
        &app,
        Method::POST,
        &uri,
        &auth,
        Some(json!({ "user_id": 1 })),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{body}"
    );
    let (status, body) = send(
        &app,
        Method::POST,
        &uri,
        &auth,
        Some(json!({ "user_id": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["rank"], 2, "the refused apply took no slot");

    // Alice reads her own (no worker runs here: pending), by id and as `me`.
    for path in ["1", "me"] {
        let (status, body) = coupon_with(&app, campaign, path, &alice).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {body}");
    }
    let (status, body) = coupon_with(&app, campaign, "1", &bob).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{body}"
    );
    // The admin reads anyone's; nobody reads without credentials.
    let (status, body) = coupon_with(&app, campaign, "1", ADMIN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = coupon_with(&app, campaign, "me", ADMIN).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_unauthorized(
        send(
            &app,
            Method::GET,
            &format!("/campaigns/{campaign}/coupons/1"),
            &[],
            None,
        )
        .await,
        "no credentials",
    );
    assert_unauthorized(
        send(&app, Method::POST, &uri, &[], None).await,
        "apply without credentials",
    );
}

#[tokio::test]
async fn forged_expired_early_wrong_audience_issuer_and_algorithm_tokens_are_refused() {
    let verifier =
        JwtVerifier::hs256(SECRET, &rules(Some("shop"), Some("coupons"))).expect("verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let good = json!({ "iss": "shop", "aud": "coupons" });
    let (status, body) = apply_with(&app, campaign, &hs256(&claims("7", good.clone()))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the control token: {body}");

    let forged = sign(
        Header::new(Algorithm::HS256),
        &claims("8", good.clone()),
        &EncodingKey::from_secret(b"another-secret-of-thirty-two-bytes!!"),
    );
    let expired = hs256(&json!({ "sub": "8", "exp": now() - 60, "iss": "shop", "aud": "coupons" }));
    let early = hs256(&claims(
        "8",
        json!({ "iss": "shop", "aud": "coupons", "nbf": now() + 600 }),
    ));
    let wrong_audience = hs256(&claims("8", json!({ "iss": "shop", "aud": "ads" })));
    let no_audience = hs256(&claims("8", json!({ "iss": "shop" })));
    let wrong_issuer = hs256(&claims("8", json!({ "iss": "evil", "aud": "coupons" })));
    let wrong_algorithm = sign(
        Header::new(Algorithm::HS512),
        &claims("8", good.clone()),
        &EncodingKey::from_secret(SECRET),
    );
    let no_expiry = hs256(&json!({ "sub": "8", "iss": "shop", "aud": "coupons" }));
    let not_a_user = hs256(&claims("alice", good.clone()));
    // `alg: none`, unsigned.
    let unsigned = format!(
        "{}.{}.",
        base64_url(
            json!({ "alg": "none", "typ": "JWT" })
                .to_string()
                .as_bytes()
        ),
        base64_url(claims("8", good.clone()).to_string().as_bytes())
    );
    for (why, token) in [
        ("forged", forged),
        ("expired", expired),
        ("not yet valid", early),
        ("wrong audience", wrong_audience),
        ("no audience", no_audience),
        ("wrong issuer", wrong_issuer),
        ("wrong algorithm", wrong_algorithm),
        ("no expiry", no_expiry),
        ("sub not a user id", not_a_user),
        ("unsigned", unsigned),
        ("garbage", "not.a.token".into()),
    ] {
        assert_unauthorized(apply_with(&app, campaign, &token).await, why);
    }
    // None of them took a slot.
    let (status, body) = apply_with(&app, campaign, &hs256(&claims("9", good))).await;
    assert_eq!(
        (status, &body["rank"]),
        (StatusCode::ACCEPTED, &json!(2)),
        "{body}"
    );
}

/// A token may live at most `--jwt-max-lifetime-secs` (here a day, the default) from
/// now: one whose `exp` is 31 years ahead is refused, as minting one is.
#[tokio::test]
async fn a_token_living_longer_than_the_maximum_lifetime_is_refused() {
    let limited = JwtRules {
        max_lifetime_secs: Some(86_400),
        leeway_secs: 30,
        ..rules(None, None)
    };
    let verifier = JwtVerifier::hs256(SECRET, &limited).expect("verifier");
    let (app, campaign) = service(Identity::Jwt(verifier), RateLimits::default()).await;
    let for_ever = hs256(&json!({ "sub": "1", "exp": now() + 31 * 365 * 86_400 }));
    let a_day_and_a_minute = hs256(&json!({ "sub": "1", "exp": now() + 86_400 + 60 }));
    for (why, token) in [
        ("31 years", for_ever),
        ("a day and a minute", a_day_and_a_minute),
    ] {
        let (status, body) = apply_with(&app, campaign, &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{why}: {body}"
        );
    }
    let a_day = hs256(&json!({ "sub": "1", "exp": now() + 86_400 }));
    let (status, body) = apply_with(&app, campaign, &a_day).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a day: {body}");
    let minted =
        firstcome_server::auth::mint_hs256(SECRET, coupon_core::UserId(2), 86_401, &limited)
            .expect_err("a ttl above the maximum");
    assert!(minted.contains("--jwt-max-lifetime-secs"), "{minted}");
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
