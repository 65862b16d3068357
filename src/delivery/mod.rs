pub mod dispatcher;
pub mod outcome;
pub mod sender;
