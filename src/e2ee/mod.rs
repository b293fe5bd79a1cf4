//! PLACEHOLDER: the participants' E2EE core (issue 3).
