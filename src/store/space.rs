//! Free space on the volume: `statvfs(3)` of the root, for the
//! `project_http_volume_free_bytes` / `…_total_bytes` metrics, the
//! dashboard's warning, and the early 507 of an upload that would leave
//! less than `min_free_bytes`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes free to unprivileged writers and the filesystem's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// `f_bavail * f_frsize`.
    pub free: u64,
    /// `f_blocks * f_frsize`.
    pub total: u64,
}

/// `statvfs` of `path`; `None` when it fails (the caller then skips the check).
pub fn of(path: &Path) -> Option<Space> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct of the right type.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let unit = stat.f_frsize as u64;
    Some(Space {
        free: (stat.f_bavail as u64).saturating_mul(unit),
        total: (stat.f_blocks as u64).saturating_mul(unit),
    })
}

/// `Err(message)` when writing `incoming` bytes (`None`: a chunked upload
/// of unknown size, counted as 0) would leave less than `min_free` free;
/// the message says how much is free.
pub fn check(space: Space, incoming: Option<u64>, min_free: u64) -> Result<(), String> {
    if min_free == 0 {
        return Ok(());
    }
    let left = space.free.saturating_sub(incoming.unwrap_or(0));
    if left < min_free {
        let upload = match incoming {
            Some(bytes) => format!("this upload of {bytes} bytes would leave"),
            None => "even before this upload (of unknown size) that is".to_string(),
        };
        return Err(format!(
            "the volume has {} bytes free of {}; {upload} less than min_free_bytes = {min_free}: \
             prune or delete deployments, or grow the volume",
            space.free, space.total
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_and_check() {
        let space = of(Path::new("/")).unwrap();
        assert!(space.total > 0 && space.free <= space.total);
        let s = Space {
            free: 100,
            total: 1000,
        };
        assert!(check(s, Some(50), 0).is_ok());
        assert!(check(s, Some(50), 50).is_ok());
        let e = check(s, Some(60), 50).unwrap_err();
        assert!(
            e.contains("100 bytes free") && e.contains("of 60 bytes"),
            "{e}"
        );
        let e = check(s, None, 200).unwrap_err();
        assert!(
            e.contains("of unknown size") && !e.contains("of 0 bytes"),
            "{e}"
        );
    }
}
