//! Bindings for the nm layer (PS3.3 C.8.4.8): `NmPlan` wraps `kernel::Plan`. Frames are read from a
//! `bytes` object or from a caller-held contiguous buffer given as (address, length), and
//! written into a new `bytearray` or a caller-held buffer, with the GIL released during the copy.
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyTuple};

use ::nm as kernel;

use crate::errors::NmError;

fn nm_err(e: kernel::NmError) -> PyErr {
    NmError::new_err(e.to_string())
}

/// A byte region handed over by Python: either an immutable `bytes` or a raw (address, length)
/// of a buffer the caller keeps alive, contiguous, and does not resize during the call.
enum Region<'a> {
    Bytes(&'a [u8]),
    Raw(usize, usize),
}

impl Region<'_> {
    fn extract<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Region<'a>> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Region::Bytes(b.as_bytes()));
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            let (addr, len): (usize, usize) = t.extract()?;
            if addr == 0 && len != 0 {
                return Err(PyTypeError::new_err("null buffer address"));
            }
            return Ok(Region::Raw(addr, len));
        }
        Err(PyTypeError::new_err(
            "expected bytes or an (address, length) tuple of a contiguous buffer",
        ))
    }

    /// # Safety
    /// For `Raw`, the caller (the Python layer) guarantees the region is valid for reads.
    unsafe fn slice(&self) -> &[u8] {
        match self {
            Region::Bytes(b) => b,
            Region::Raw(0, _) => &[],
            Region::Raw(a, n) => unsafe { std::slice::from_raw_parts(*a as *const u8, *n) },
        }
    }
}

/// Allocates a `bytearray` of `len` bytes without initialising it (the kernel fills every byte).
fn uninit_bytearray(py: Python<'_>, len: usize) -> PyResult<(Bound<'_, PyByteArray>, usize)> {
    let n = isize::try_from(len).map_err(|_| NmError::new_err("volume too large"))?;
    // SAFETY: PyByteArray_FromStringAndSize(NULL, n) returns a new reference to an uninitialised
    // bytearray of n bytes (stable ABI); AsString gives its buffer.
    unsafe {
        let raw = pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), n);
        let obj = Bound::from_owned_ptr_or_err(py, raw)?.cast_into::<PyByteArray>()?;
        let ptr = pyo3::ffi::PyByteArray_AsString(obj.as_ptr()) as usize;
        Ok((obj, ptr))
    }
}

/// Validated frame ↔ grid mapping (PS3.3 C.8.4.8.1.1): one axis per Frame Increment Pointer
/// vector, last axis fastest.
#[pyclass(module = "ferrodicom._core", name = "NmPlan", frozen)]
struct PyNmPlan {
    plan: kernel::Plan,
}

#[pymethods]
impl PyNmPlan {
    #[new]
    #[pyo3(signature = (names, vectors, extents, n_frames, subset=None))]
    fn new(
        py: Python<'_>,
        names: Vec<String>,
        vectors: Vec<Vec<u32>>,
        extents: Vec<usize>,
        n_frames: usize,
        subset: Option<Vec<usize>>,
    ) -> PyResult<Self> {
        if names.len() != vectors.len() || names.len() != extents.len() {
            return Err(NmError::new_err(format!(
                "{} names, {} vectors and {} extents: one of each per axis",
                names.len(),
                vectors.len(),
                extents.len()
            )));
        }
        let plan = py.detach(|| {
            let axes: Vec<kernel::Axis<'_>> = names
                .iter()
                .zip(&vectors)
                .zip(&extents)
                .map(|((n, v), &e)| kernel::Axis {
                    name: n,
                    values: v,
                    extent: e,
                })
                .collect();
            kernel::Plan::new(&axes, n_frames, subset.as_deref())
        });
        Ok(PyNmPlan {
            plan: plan.map_err(nm_err)?,
        })
    }

    /// Extent of each axis, in Frame Increment Pointer order.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.plan.shape().to_vec()
    }

    /// True when frame k already fills slot k (the Pixel Data is the volume).
    #[getter]
    fn is_identity(&self) -> bool {
        self.plan.is_identity()
    }

    /// For each C-order slot, the 0-based frame that fills it.
    #[getter]
    fn slot_frames(&self) -> Vec<u32> {
        self.plan.slot_frames().to_vec()
    }

    /// For each frame of the object, its C-order slot, or -1 outside the subset.
    #[getter]
    fn frame_slots(&self) -> Vec<i64> {
        self.plan
            .frame_slots()
            .iter()
            .map(|&s| if s == u32::MAX { -1 } else { s as i64 })
            .collect()
    }

    /// Copies the frames into C order. Returns a new `bytearray`, or None when `out` (an
    /// (address, length) of a writable buffer) is given. `fresh`: `out` was just allocated and
    /// never touched, so one thread faults its pages in, 2 MiB at a time, while the others copy
    /// (always so for the new `bytearray`); the bytes written are the same either way.
    #[pyo3(signature = (pixels, frame_len, sample_bytes, swap, out=None, stream=None, threads=None, fresh=false))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn gather<'py>(
        &self,
        py: Python<'py>,
        pixels: &Bound<'py, PyAny>,
        frame_len: usize,
        sample_bytes: usize,
        swap: bool,
        out: Option<(usize, usize)>,
        stream: Option<bool>,
        threads: Option<usize>,
        fresh: bool,
    ) -> PyResult<Option<Bound<'py, PyByteArray>>> {
        let src = Region::extract(pixels)?;
        let need = self
            .plan
            .len()
            .checked_mul(frame_len)
            .ok_or_else(|| NmError::new_err("volume too large"))?;
        let (ret, dst, dst_len, fresh) = match out {
            Some((addr, len)) => {
                if addr == 0 && len != 0 {
                    return Err(PyTypeError::new_err("null buffer address"));
                }
                (None, addr, len, fresh)
            }
            None => {
                let (obj, ptr) = uninit_bytearray(py, need)?;
                (Some(obj), ptr, need, true)
            }
        };
        py.detach(|| {
            // SAFETY: `src` is bytes (immutable, kept alive by `pixels`) or a caller-held buffer;
            // `dst` is the bytearray just allocated (not yet visible to Python) or the caller's
            // writable buffer of `dst_len` bytes.
            let s = unsafe { src.slice() };
            let d = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, dst_len) };
            self.plan.gather_with(
                s,
                frame_len,
                sample_bytes,
                swap,
                d,
                kernel::CopyOptions {
                    stream,
                    threads,
                    fresh,
                },
            )
        })
        .map_err(nm_err)?;
        Ok(ret)
    }

    /// The inverse of `gather`: writes the C-order volume back in frame order into a new
    /// `bytearray` (or into `out`). Without `out`, the plan must cover every frame. `fresh` as
    /// in `gather`.
    #[pyo3(signature = (volume, frame_len, sample_bytes, swap, out=None, stream=None, threads=None, fresh=false))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn scatter<'py>(
        &self,
        py: Python<'py>,
        volume: &Bound<'py, PyAny>,
        frame_len: usize,
        sample_bytes: usize,
        swap: bool,
        out: Option<(usize, usize)>,
        stream: Option<bool>,
        threads: Option<usize>,
        fresh: bool,
    ) -> PyResult<Option<Bound<'py, PyByteArray>>> {
        let src = Region::extract(volume)?;
        let n_frames = self.plan.frame_slots().len();
        let need = n_frames
            .checked_mul(frame_len)
            .ok_or_else(|| NmError::new_err("pixel data too large"))?;
        let (ret, dst, dst_len, fresh) = match out {
            Some((addr, len)) => {
                if addr == 0 && len != 0 {
                    return Err(PyTypeError::new_err("null buffer address"));
                }
                (None, addr, len, fresh)
            }
            None => {
                if self.plan.len() != n_frames {
                    return Err(NmError::new_err(
                        "a subset plan scatters only into an existing buffer (out=)",
                    ));
                }
                let (obj, ptr) = uninit_bytearray(py, need)?;
                (Some(obj), ptr, need, true)
            }
        };
        py.detach(|| {
            // SAFETY: as in `gather`.
            let s = unsafe { src.slice() };
            let d = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, dst_len) };
            self.plan.scatter_with(
                s,
                frame_len,
                sample_bytes,
                swap,
                d,
                kernel::CopyOptions {
                    stream,
                    threads,
                    fresh,
                },
            )
        })
        .map_err(nm_err)?;
        Ok(ret)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNmPlan>()?;
    Ok(())
}
