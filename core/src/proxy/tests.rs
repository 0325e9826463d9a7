use super::encode::{Answer, Question};
use super::*;
use spindle_hub::config::{StatusToCodeTransform, TransformDisconnect, TransformError};

#[test]
fn binary_encoding_moves_payloads_to_b64data_and_meta_needs_opting_in() {
    let mut proxy = Proxy::default();
    let mut request = proxy::RpcRequest {
        data: bytes::Bytes::from_static(b"{\"a\":1}"),
        meta: bytes::Bytes::from_static(b"{\"m\":1}"),
        ..Default::default()
    };
    let mut plain = request.clone();
    plain.prepare(&proxy);
    assert_eq!(plain.encoding, "json");
    assert!(plain.meta.is_empty());
    let json = serde_json::to_string(&plain).unwrap();
    assert!(json.contains(r#""data":{"a":1}"#), "{json}");
    assert!(json.contains(r#""user":"""#), "user is always sent: {json}");

    proxy.binary_encoding = true;
    proxy.include_connection_meta = true;
    request.prepare(&proxy);
    assert_eq!(request.encoding, "binary");
    assert_eq!(request.b64data, "eyJhIjoxfQ==");
    assert!(request.data.is_empty());
    assert_eq!(&request.meta[..], b"{\"m\":1}");
}

#[test]
fn answers_decode_base64_fields() {
    let body = br#"{"result":{"user":"u","b64info":"aGk=","subs":{"c":{"b64data":"eA=="}}}}"#;
    let mut answer: proxy::ConnectResponse = serde_json::from_slice(body).unwrap();
    answer.decode_base64().unwrap();
    let result = answer.result.unwrap();
    assert_eq!(&result.info[..], b"hi");
    assert_eq!(&result.subs["c"].data[..], b"x");

    let body = br#"{"result":{"b64data":"not base64!"}}"#;
    let mut answer: proxy::RpcResponse = serde_json::from_slice(body).unwrap();
    assert!(answer.decode_base64().is_err());
}

#[test]
fn statuses_become_100_unless_transformed() {
    let mut proxy = Proxy::default();
    assert_eq!(
        HttpProxyError::Status(500).refusal(&proxy),
        Refusal::Error(internal_error())
    );
    proxy.http.status_to_code_transforms = vec![
        StatusToCodeTransform {
            status_code: 404,
            to_error: TransformError {
                code: 404,
                message: "not found".into(),
                temporary: false,
            },
            ..Default::default()
        },
        StatusToCodeTransform {
            status_code: 403,
            to_disconnect: TransformDisconnect {
                code: 4403,
                reason: "forbidden".into(),
            },
            ..Default::default()
        },
    ];
    assert!(matches!(
        HttpProxyError::Status(404).refusal(&proxy),
        Refusal::Error(proxy::Error { code: 404, .. })
    ));
    assert!(matches!(
        HttpProxyError::Status(403).refusal(&proxy),
        Refusal::Disconnect(proxy::Disconnect { code: 4403, .. })
    ));
    assert_eq!(
        HttpProxyError::Network("x".into()).refusal(&proxy),
        Refusal::Error(internal_error())
    );
}

#[test]
fn refused_answers_carry_the_refusal() {
    let answer = proxy::SubscribeResponse::refused(Refusal::Error(internal_error()));
    assert_eq!(answer.error.unwrap().code, 100);
    assert!(answer.result.is_none());
}
