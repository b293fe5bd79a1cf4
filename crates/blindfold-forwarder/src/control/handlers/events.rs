//! `GET /v1/events`: the speaker event stream, as Server-Sent Events, for the signalling
//! service to relay to the participants.
//!
//! Owns the stream's framing and its life: a new listener first gets the current state
//! of every conference with detection on and a speaker, then every change as the control
//! thread decides it; a listener too slow for the channel (it lagged) gets the current
//! state again instead of a gap; the stream ends when the server stops. Must carry only
//! ephemeral conference and endpoint ids, never an address or a level.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use blindfold_control::SpeakerEvent;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::super::Shared;
use super::super::openapi::AuthErrors;
use super::super::router::AppState;

/// Comment lines this often keep idle proxies and the client's idle bound at bay.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Speaker changes of every conference: `event: speaker` with a [`SpeakerEvent`] as
/// `data`, the current state of each conference first. Only conferences with speaker
/// detection on appear.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    responses(
        (status = 200, description = "A text/event-stream of `speaker` events, each a SpeakerEvent as JSON data", body = SpeakerEvent, content_type = "text/event-stream"),
        AuthErrors,
    )
)]
pub(crate) async fn events(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let shared = st.shared.clone();
    let rx = shared.speakers.subscribe();
    let stop = shared.stop.subscribe();
    let pending = snapshot(&shared);
    let stream = futures_util::stream::unfold(
        (rx, pending, stop, shared),
        |(mut rx, mut pending, mut stop, shared)| async move {
            loop {
                if let Some(ev) = pending.pop_front() {
                    let event = Event::default()
                        .event("speaker")
                        .json_data(&ev)
                        .unwrap_or_else(|_| Event::default().comment("unserialisable"));
                    return Some((Ok(event), (rx, pending, stop, shared)));
                }
                if *stop.borrow() {
                    return None;
                }
                tokio::select! {
                    r = rx.recv() => match r {
                        Ok(ev) => pending.push_back(ev),
                        Err(RecvError::Lagged(_)) => pending = snapshot(&shared),
                        Err(RecvError::Closed) => return None,
                    },
                    _ = stop.changed() => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// Every conference's current speaker state.
fn snapshot(shared: &Arc<Shared>) -> VecDeque<SpeakerEvent> {
    shared
        .lock()
        .speakers()
        .into_iter()
        .filter_map(super::super::speaker_event)
        .collect()
}
