//! Image operations behind `vessel img`.
