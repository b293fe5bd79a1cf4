//! The control API's handlers, one file per resource: [`conferences`], [`endpoints`] and
//! [`meta`] (document, metrics, health). Each parses its request with the wire types of
//! `blindfold-control`, asks the [`Model`](blindfold_proto::model::Model) through
//! `Shared`, and answers with a wire type or an [`ApiError`](super::error::ApiError).
//!
//! Own request handling and status codes only; every decision about conferences is the
//! model's. Must not hold the model lock across an `.await`, and must not log ids,
//! addresses or tokens at info level.

pub(super) mod conferences;
pub(super) mod endpoints;
pub(super) mod meta;

use blindfold_control as wire;
use blindfold_proto::model::{Subscription, Track, TrackKind};

/// The model's track from the wire's.
pub(super) fn track_in(t: wire::TrackJson) -> Track {
    Track {
        id: t.id,
        kind: match t.kind {
            wire::TrackKind::Audio => TrackKind::Audio,
            wire::TrackKind::Video => TrackKind::Video,
            wire::TrackKind::Screen => TrackKind::Screen,
        },
        ssrcs: t.ssrcs,
    }
}

/// The wire's track from the model's.
pub(super) fn track_out(t: Track) -> wire::TrackJson {
    wire::TrackJson {
        id: t.id,
        kind: match t.kind {
            TrackKind::Audio => wire::TrackKind::Audio,
            TrackKind::Video => wire::TrackKind::Video,
            TrackKind::Screen => wire::TrackKind::Screen,
        },
        ssrcs: t.ssrcs,
    }
}

/// The model's subscription from the wire's.
pub(super) fn subscription_in(s: wire::SubscriptionJson) -> Subscription {
    Subscription {
        endpoint: s.endpoint,
        track: s.track,
    }
}
