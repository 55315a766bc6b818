import Foundation

/// Open MPI opened with `dlopen` at run time, like `BLAS`: moec has no build dependency on MPI,
/// and a process not started by `mpirun` never loads it.
///
/// The library is `libmpi.so.40` (Open MPI 4 and 5; Debian's `openmpi-bin`), or the file named
/// by `MOEC_MPI=PATH`. Open MPI's predefined handles are the addresses of exported globals
/// (`MPI_COMM_WORLD` is `&ompi_mpi_comm_world`, `MPI_FLOAT` is `&ompi_mpi_float`), so `dlsym`
/// finds them as it finds the functions. It is opened `RTLD_GLOBAL` because Open MPI's own
/// plugins, which it opens later, resolve their symbols against it.
///
/// Only the calls moec makes are bound. Errors inside MPI abort the job (MPI's default error
/// handler), so the calls return nothing.
public final class MPILibrary: @unchecked Sendable {
    typealias InitThread = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int32, UnsafeMutablePointer<Int32>) -> Int32
    typealias Finalize = @convention(c) () -> Int32
    typealias CommQuery = @convention(c) (UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>) -> Int32
    typealias Allgatherv =
        @convention(c) (
            UnsafeRawPointer?, Int32, UnsafeMutableRawPointer, UnsafeMutableRawPointer, UnsafePointer<Int32>,
            UnsafePointer<Int32>, UnsafeMutableRawPointer, UnsafeMutableRawPointer
        ) -> Int32
    typealias Alltoallv =
        @convention(c) (
            UnsafeRawPointer, UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafeMutableRawPointer, UnsafeMutableRawPointer,
            UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafeMutableRawPointer, UnsafeMutableRawPointer
        ) -> Int32
    typealias Alltoall =
        @convention(c) (
            UnsafeRawPointer, Int32, UnsafeMutableRawPointer, UnsafeMutableRawPointer, Int32, UnsafeMutableRawPointer,
            UnsafeMutableRawPointer
        ) -> Int32
    typealias Abort = @convention(c) (UnsafeMutableRawPointer, Int32) -> Int32

    /// The file that was opened.
    public let path: String
    let initThread: InitThread
    let finalize: Finalize
    let commRank: CommQuery
    let commSize: CommQuery
    let allgatherv: Allgatherv
    let alltoallv: Alltoallv
    let alltoall: Alltoall
    let abort: Abort
    let commWorld: UnsafeMutableRawPointer
    let float: UnsafeMutableRawPointer
    let double: UnsafeMutableRawPointer
    let int32: UnsafeMutableRawPointer

    /// `MPI_IN_PLACE` in Open MPI's `mpi.h` (the address 1).
    static var inPlace: UnsafeRawPointer? { UnsafeRawPointer(bitPattern: 1) }
    /// `MPI_THREAD_SERIALIZED`: one thread calls MPI at a time (moec's steps call it from the
    /// thread that runs the schedule, never from the kernels' worker threads).
    static let threadSerialized: Int32 = 2

    /// The library opened when `MOEC_MPI` is not set.
    public static let defaultPath = "libmpi.so.40"

    /// Opens `path` (or `MOEC_MPI`, or `defaultPath`); fails when it cannot be opened or lacks a
    /// symbol moec needs (then it is not Open MPI).
    public static func open(_ path: String) -> Result<MPILibrary, MPIError> {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            return .failure(MPIError(message: "\(path) cannot be loaded: \(reason)"))
        }
        func symbol(_ name: String) throws(MPIError) -> UnsafeMutableRawPointer {
            guard let s = dlsym(handle, name) else {
                throw MPIError(message: "\(path) has no symbol \(name) (moec needs Open MPI's libmpi)")
            }
            return s
        }
        do {
            return .success(
                MPILibrary(
                    path: path,
                    initThread: unsafeBitCast(try symbol("MPI_Init_thread"), to: InitThread.self),
                    finalize: unsafeBitCast(try symbol("MPI_Finalize"), to: Finalize.self),
                    commRank: unsafeBitCast(try symbol("MPI_Comm_rank"), to: CommQuery.self),
                    commSize: unsafeBitCast(try symbol("MPI_Comm_size"), to: CommQuery.self),
                    allgatherv: unsafeBitCast(try symbol("MPI_Allgatherv"), to: Allgatherv.self),
                    alltoallv: unsafeBitCast(try symbol("MPI_Alltoallv"), to: Alltoallv.self),
                    alltoall: unsafeBitCast(try symbol("MPI_Alltoall"), to: Alltoall.self),
                    abort: unsafeBitCast(try symbol("MPI_Abort"), to: Abort.self),
                    commWorld: try symbol("ompi_mpi_comm_world"), float: try symbol("ompi_mpi_float"),
                    double: try symbol("ompi_mpi_double"), int32: try symbol("ompi_mpi_int")))
        } catch {
            return .failure(error)
        }
    }

    private init(
        path: String, initThread: InitThread, finalize: Finalize, commRank: CommQuery, commSize: CommQuery,
        allgatherv: Allgatherv, alltoallv: Alltoallv, alltoall: Alltoall, abort: Abort, commWorld: UnsafeMutableRawPointer,
        float: UnsafeMutableRawPointer, double: UnsafeMutableRawPointer, int32: UnsafeMutableRawPointer
    ) {
        self.path = path
        self.initThread = initThread
        self.finalize = finalize
        self.commRank = commRank
        self.commSize = commSize
        self.allgatherv = allgatherv
        self.alltoallv = alltoallv
        self.alltoall = alltoall
        self.abort = abort
        self.commWorld = commWorld
        self.float = float
        self.double = double
        self.int32 = int32
    }
}

/// Why MPI could not be used.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// How `mpirun` started this process, read from the environment Open MPI gives each rank
/// (`OMPI_COMM_WORLD_SIZE`, `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_LOCAL_SIZE`), before MPI
/// is loaded: nil when the process was not started by Open MPI's `mpirun`.
public struct MPILaunch: Sendable, Equatable {
    public var rank: Int
    public var size: Int
    /// Ranks on this machine (they share its cores).
    public var localSize: Int

    public static var current: MPILaunch? { MPILaunch(environment: ProcessInfo.processInfo.environment) }

    public init?(environment e: [String: String]) {
        guard let size = e["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init), let rank = e["OMPI_COMM_WORLD_RANK"].flatMap(Int.init),
            size >= 1, rank >= 0, rank < size
        else { return nil }
        self.rank = rank
        self.size = size
        localSize = max(1, e["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? size)
    }
}

/// The processes of an `mpirun` job, after `MPI_Init`: each knows its rank, and the job's
/// collectives go through here. Every rank must make the same collective calls in the same
/// order (moec's are made by the schedule's steps, which every rank runs identically).
public final class MPIWorld: @unchecked Sendable {
    public let library: MPILibrary
    public let rank: Int
    public let size: Int

    /// Loads MPI (`MOEC_MPI` or `libmpi.so.40`) and initialises it. Call once, from the thread
    /// that will make the collective calls.
    public static func initialize(environment: String? = ProcessInfo.processInfo.environment["MOEC_MPI"]) throws(MPIError) -> MPIWorld {
        let path = environment.flatMap { $0.isEmpty ? nil : $0 } ?? MPILibrary.defaultPath
        let library: MPILibrary
        switch MPILibrary.open(path) {
        case .success(let l): library = l
        case .failure(let e):
            throw MPIError(message: environment == nil ? "\(e.message) (install Open MPI, e.g. openmpi-bin, or set MOEC_MPI=PATH)" : "MOEC_MPI=\(e.message)")
        }
        var provided: Int32 = 0
        _ = library.initThread(nil, nil, MPILibrary.threadSerialized, &provided)
        var rank: Int32 = 0, size: Int32 = 0
        _ = library.commRank(library.commWorld, &rank)
        _ = library.commSize(library.commWorld, &size)
        return MPIWorld(library: library, rank: Int(rank), size: Int(size))
    }

    private init(library: MPILibrary, rank: Int, size: Int) {
        self.library = library
        self.rank = rank
        self.size = size
    }

    /// `MPI_Allgatherv` of floats in place: rank r's `counts[r]` floats start at `data + displs[r]`
    /// on entry; on return every rank's are in place on every rank.
    public func allGatherInPlace(_ data: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>) {
        _ = library.allgatherv(MPILibrary.inPlace, 0, library.float, data, counts, displacements, library.float, library.commWorld)
    }

    /// `MPI_Allgatherv` of doubles in place: `count` from each rank, rank r's at `data + r·count`.
    /// For figures every rank measured (benchmarks), not for tensors.
    public func allGatherInPlace(_ data: UnsafeMutablePointer<Double>, countPerRank count: Int) {
        let counts = [Int32](repeating: Int32(count), count: size)
        let displacements = (0..<size).map { Int32($0 * count) }
        _ = library.allgatherv(MPILibrary.inPlace, 0, library.double, data, counts, displacements, library.double, library.commWorld)
    }

    /// `MPI_Alltoallv` of floats: `sendCounts[r]` floats from `send + sendDisplacements[r]` go to
    /// rank r, and rank r's `receiveCounts[r]` floats land at `receive + receiveDisplacements[r]`.
    public func allToAll(
        _ send: UnsafePointer<Float>, counts sendCounts: UnsafePointer<Int32>, displacements sendDisplacements: UnsafePointer<Int32>,
        into receive: UnsafeMutablePointer<Float>, counts receiveCounts: UnsafePointer<Int32>,
        displacements receiveDisplacements: UnsafePointer<Int32>
    ) {
        _ = library.alltoallv(
            send, sendCounts, sendDisplacements, library.float, receive, receiveCounts, receiveDisplacements, library.float,
            library.commWorld)
    }

    /// `MPI_Allgatherv` of 32-bit integers in place, as `allGatherInPlace(_:counts:displacements:)`
    /// of floats (for i32 tensors).
    public func allGatherInPlace(_ data: UnsafeMutablePointer<Int32>, counts: UnsafePointer<Int32>, displacements: UnsafePointer<Int32>) {
        _ = library.allgatherv(MPILibrary.inPlace, 0, library.int32, data, counts, displacements, library.int32, library.commWorld)
    }

    /// `MPI_Alltoall` of 32-bit integers: `count` from `send + r·count` go to rank r, and rank r's
    /// `count` land at `receive + r·count` (the counts of an `allToAll` exchanged first).
    public func allToAll(_ send: UnsafePointer<Int32>, countPerRank count: Int, into receive: UnsafeMutablePointer<Int32>) {
        _ = library.alltoall(send, Int32(count), library.int32, receive, Int32(count), library.int32, library.commWorld)
    }

    public func finalize() { _ = library.finalize() }

    /// Ends every rank of the job with `code` (`MPI_Abort`): a rank that failed alone must not
    /// leave the others waiting in a collective.
    public func abort(_ code: Int32) -> Never {
        _ = library.abort(library.commWorld, code)
        exit(code)
    }
}
