import Foundation

#if canImport(Darwin)
    import Darwin
#elseif canImport(Glibc)
    import Glibc
#endif

/// A whole file mapped read-only into memory.
///
/// Readers index it only through `bytes`, whose count is the size the file had when it was
/// opened, so nothing past the mapping is ever touched. (If another process truncates the file
/// while it is mapped, reading the lost pages raises SIGBUS; the fingerprints exist so a plan
/// notices changed weights before it maps them.)
final class MappedFile: @unchecked Sendable {
    let path: String
    /// The mapped bytes; empty (with no mapping) for an empty file.
    let bytes: UnsafeRawBufferPointer
    private let mapping: UnsafeMutableRawPointer?

    init(path: String) throws(WeightFileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw WeightFileError(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw WeightFileError(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw WeightFileError(path: path, message: "not a regular file")
        }
        let size = Int(st.st_size)
        if size == 0 {
            mapping = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw WeightFileError(path: path, message: "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        mapping = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    var size: Int { bytes.count }

    /// Drops the whole pages inside `range` from memory (a private read-only file mapping: they
    /// are read from the file again if touched). Called once a tensor has been copied out, so
    /// that loading a checkpoint does not keep both the file's pages and the copy resident.
    func releasePages(_ range: Range<Int>) {
        guard let base = mapping else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = min(range.upperBound, bytes.count) / page * page
        guard end > start else { return }
        _ = madvise(base + start, end - start, Int32(MADV_DONTNEED))
    }

    deinit {
        if let m = mapping { munmap(m, bytes.count) }
    }
}
