//! Workload controller (in progress).
