//! The control API's handlers, one file per resource: [`conferences`], [`endpoints`],
//! [`events`] (the speaker event stream) and [`meta`] (document, metrics, health). Each parses its request with the wire types of
//! `blindfold-control`, asks the [`Model`](blindfold_proto::model::Model) through
//! `Shared`, and answers with a wire type or an [`ApiError`](super::error::ApiError).
//!
//! Own request handling and status codes only; every decision about conferences is the
//! model's. Must not hold the model lock across an `.await`, and must not log ids,
//! addresses or tokens at info level.

pub(super) mod conferences;
pub(super) mod endpoints;
pub(super) mod events;
pub(super) mod meta;

use blindfold_control as wire;
use blindfold_proto::model::{
    ConferenceSettings, Receive, Subscription, Track, TrackExt, TrackKind,
};

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
        ext: TrackExt {
            audio_level: t.extensions.audio_level,
            frame_marking: t.extensions.frame_marking,
        },
        simulcast: t.simulcast,
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
        extensions: wire::TrackExtensions {
            audio_level: t.ext.audio_level,
            frame_marking: t.ext.frame_marking,
        },
        simulcast: t.simulcast,
    }
}

/// The model's subscription from the wire's.
pub(super) fn subscription_in(s: wire::SubscriptionJson) -> Subscription {
    Subscription {
        endpoint: s.endpoint,
        track: s.track,
        layer: s.layer,
        paused: s.paused,
    }
}

/// The model's conference settings from the wire's, and back.
pub(super) fn settings_in(s: wire::ConferenceSettings) -> ConferenceSettings {
    ConferenceSettings {
        speaker_detection: s.speaker_detection,
        last_n: s.last_n,
        top_k_audio: s.top_k_audio,
    }
}

pub(super) fn settings_out(s: ConferenceSettings) -> wire::ConferenceSettings {
    wire::ConferenceSettings {
        speaker_detection: s.speaker_detection,
        last_n: s.last_n,
        top_k_audio: s.top_k_audio,
    }
}

/// The model's receive choices from the wire's, and back.
pub(super) fn receive_in(r: wire::ReceiveJson) -> Receive {
    Receive {
        last_n: r.last_n,
        top_k_audio: r.top_k_audio,
        pins: r.pins,
    }
}

pub(super) fn receive_out(r: Receive) -> wire::ReceiveJson {
    wire::ReceiveJson {
        last_n: r.last_n,
        top_k_audio: r.top_k_audio,
        pins: r.pins,
    }
}
