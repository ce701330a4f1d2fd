"""Training internals (not public API): Stage-1 and Stage-2 objectives, data and the Accelerate trainer."""
