//! The operations plug: cash sessions and sales (returns and voids come later). It uses the
//! management plug only through `management::api`.

pub mod api;
pub mod cash;
pub mod sales;
