//! (in progress: the control API)
