//! The server-side filter of a `$all` subscription, derived from the connector's filter so that
//! events the connector would drop do not cross the wire. KurrentDB filters on one thing (event
//! type or stream name, by prefixes or one regex), so only the part of the configuration that
//! fits is pushed down; the gateway's own filter still checks every event it receives, which
//! keeps the result the same whatever the server filters.

use kurrentdb::SubscriptionFilter;

use crate::config::FilterConfig;

/// The narrowest server filter that lets every event the connector's filter accepts through.
/// `None` when the connector takes everything, system events included.
pub fn server_filter(config: &FilterConfig, checkpoint_interval: u32) -> Option<SubscriptionFilter> {
    let streams_narrowed = !config.include_stream_prefixes.is_empty() || config.include_stream_regex.is_some();
    let filter = if !config.include_types.is_empty() && !streams_narrowed {
        let names: Vec<String> = config.include_types.iter().map(|t| regex::escape(t)).collect();
        SubscriptionFilter::on_event_type().regex(format!("^(?:{})$", names.join("|")))
    } else if !config.include_stream_prefixes.is_empty() && config.include_stream_regex.is_none() && config.include_types.is_empty() {
        config.include_stream_prefixes.iter().fold(SubscriptionFilter::on_stream_name(), |f, p| f.add_prefix(p))
    } else if let (Some(pattern), true, true) =
        (&config.include_stream_regex, config.include_stream_prefixes.is_empty(), config.include_types.is_empty())
    {
        SubscriptionFilter::on_stream_name().regex(pattern)
    } else if !config.include_system {
        SubscriptionFilter::on_event_type().exclude_system_events()
    } else {
        return None;
    };
    Some(filter.max(checkpoint_interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(config: FilterConfig) -> Option<String> {
        server_filter(&config, 10).map(|f| format!("{f:?}"))
    }

    #[test]
    fn pushes_down_what_fits_and_nothing_that_could_lose_events() {
        let types = FilterConfig { include_types: vec!["V1.RoomBooked".into(), "Paid".into()], ..Default::default() };
        let f = describe(types).unwrap();
        assert!(f.contains("based_on_stream: false") && f.contains(r"^(?:V1\\.RoomBooked|Paid)$"), "{f}");

        let prefixes = FilterConfig { include_stream_prefixes: vec!["booking-".into()], ..Default::default() };
        let f = describe(prefixes).unwrap();
        assert!(f.contains("based_on_stream: true") && f.contains("booking-") && f.contains("max: Some(10)"), "{f}");

        // Types and streams together cannot be one server filter: only system events go.
        let both = FilterConfig {
            include_types: vec!["A".into()],
            include_stream_prefixes: vec!["b-".into()],
            ..Default::default()
        };
        let f = describe(both).unwrap();
        assert!(f.contains(r"^[^\\$].*"), "{f}");

        assert_eq!(describe(FilterConfig { include_system: true, ..Default::default() }), None);
    }
}
