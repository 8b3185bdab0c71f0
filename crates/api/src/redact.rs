//! Credentials out of what the node prints: URLs with their password masked.

/// `url` with the password of its user info replaced by `***` (`mqtts://node:***@host:8883`),
/// the way the node prints or logs a broker or peer URL: a credential is never printed. A URL without
/// a password is returned as it is.
///
/// ```
/// assert_eq!(
///     iotchain_api::redact_url("mqtts://node:secret@broker:8883/x"),
///     "mqtts://node:***@broker:8883/x"
/// );
/// assert_eq!(iotchain_api::redact_url("mqtt://node@broker"), "mqtt://node@broker");
/// ```
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_len = url[start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - start);
    let authority = &url[start..start + authority_len];
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_string();
    };
    format!(
        "{}{user}:***{}",
        &url[..start],
        &url[start + userinfo.len()..]
    )
}
