//! The few `bpf(2)` commands aya 0.14 does not expose: opening a pinned object by path and
//! reading a link's info (program id and the interface of an XDP link).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// What `BPF_OBJ_GET_INFO_BY_FD` tells of an XDP link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpLinkInfo {
    /// The link's id.
    pub id: u32,
    /// The id of the program the link runs.
    pub prog_id: u32,
    /// The interface it is attached to; 0 once the interface is gone (the link is defunct).
    pub ifindex: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly sized #[repr(C)] prefix of `union bpf_attr` for `cmd`;
    // the kernel reads (and for info, writes through pointers inside) no more than its size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by bpf(2) as a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Opens the bpffs object pinned at `path` (`BPF_OBJ_GET`).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
    }
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = Attr {
        pathname: c_path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
    };
    bpf(BPF_OBJ_GET, &mut attr).map(owned_fd)
}

/// Opens the link with id `id` (`BPF_LINK_GET_FD_BY_ID`); `NotFound` once it has been freed.
pub fn link_by_id(id: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = Attr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    bpf(BPF_LINK_GET_FD_BY_ID, &mut attr).map(owned_fd)
}

/// Reads the info of the XDP link behind `fd`.
pub fn xdp_link_info(fd: &OwnedFd) -> io::Result<XdpLinkInfo> {
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // struct bpf_link_info: type, id, prog_id (u32 each), then an 8-aligned union whose XDP arm
    // starts with the ifindex. 128 zeroed bytes cover it; the kernel accepts a longer, zeroed
    // buffer and fills only what it knows.
    let mut info = [0u32; 32];
    let mut attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(XdpLinkInfo {
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
    })
}
