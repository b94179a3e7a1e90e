//! How the process takes memory from the kernel.

/// Turns transparent huge pages off for the whole process. mimalloc asks for
/// them where the kernel gives them on request (`madvise`, the usual default),
/// and it also hands back memory it no longer uses: the next touch of such
/// memory then faulted in a whole 2 MiB page, cleared by the thread that
/// touched it, which under load was the arbiter serving a hot product (4% of
/// its time in the kernel's `clear_page_erms`). With 4 KiB pages the faults are
/// more and each is cheap: 0.02% of its time.
pub fn use_small_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(%error, "transparent huge pages stay on");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn huge_pages_are_turned_off() {
        super::use_small_pages();
        assert!(nix::sys::prctl::get_thp_disable().unwrap());
    }
}
