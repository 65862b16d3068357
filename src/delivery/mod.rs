pub mod outcome;
pub mod sender;
