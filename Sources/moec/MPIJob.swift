import Foundation
import MoEBackend
import MoEBasics
import MoECompiler
import MoEKernels

/// `mpirun -n R moec run|bench … --placement P`: each rank is one worker of the placement.
///
/// moec knows it was started by Open MPI's `mpirun` from the environment (`OMPI_COMM_WORLD_SIZE`
/// and `OMPI_COMM_WORLD_RANK`, read by `MPILaunch`), and loads MPI only then, and only for a
/// command that runs experts by a placement. Every line a rank prints to stderr starts with
/// `[rank r]`; only rank 0 writes files and prints results. A rank that fails after MPI is
/// initialised ends the whole job (`MPI_Abort`), so no rank waits forever in an exchange.
enum MPIJob {
    /// The job this process belongs to, when started by `mpirun`.
    static let launch = MPILaunch.current
    /// Set once MPI is initialised (by `distribute`).
    nonisolated(unsafe) private(set) static var world: MPIWorld?

    /// The `--help` paragraph of the commands that can run under `mpirun`.
    static let helpDetails = """
        Under Open MPI's mpirun (moec sees OMPI_COMM_WORLD_SIZE in its environment), each rank
        is one worker of --placement: 'mpirun -n R' needs a placement of R workers ('static':
        E/R consecutive experts per rank), --threads counts threads per rank (default: the
        cores / the ranks on this machine), and rank 0 alone writes files and prints results.
        Each rank runs the graph on its contiguous share of the tokens and sends each (token,
        expert) row to the rank holding the expert and back (two all-to-alls per MoE block);
        graphs whose tokens depend on each other (expert_choice, capacity, Sinkhorn) run every
        token on every rank instead, which then exchange only the results.
        'bench' times each run by its slowest rank and prints per rank the medians of its
        parts (route and other ops, dispatch = rows packed and exchanged, experts, combine),
        the tokens it ran the graph on and the pairs its router made of them, the (token,
        expert) pairs it computed and the bytes it sent ("ranks" in --json: tokens,
        routed_pairs, pairs, bytes_sent; with "tokens_sharded" and "all_tokens_reason").
        MPI is loaded at run time: libmpi.so.40, or MOEC_MPI=PATH. MOEC_PEAK_RSS=1 prints each
        rank's peak memory at exit.
        """

    /// How the ranks share the tokens, for `run`'s and `bench`'s reports.
    static func tokenMode(_ executable: Executable) -> String {
        if executable.shardsTokens { return "tokens sharded between the ranks" }
        return "every rank runs all tokens (\(executable.allTokensReason ?? "no placement"))"
    }

    /// Whether this process prints results and writes files: rank 0, or a process not run by MPI.
    static var isPrincipal: Bool { (world?.rank ?? 0) == 0 }

    /// The workers a `--placement static` split uses under `mpirun`: one per rank.
    static var staticWorkers: Int? { launch?.size }

    /// Under `mpirun`: checks that the placement has one worker per rank, loads and initialises
    /// MPI, and makes this rank run only its worker's experts, with `--threads` (or its share of
    /// the cores) inside the rank. Not under `mpirun`: nothing.
    static func distribute(_ options: inout ExecutionOptions, threads: Int?, command: String) throws {
        guard let launch else { return }
        guard command == "run" || command == "bench" else {
            if launch.size > 1 {
                throw UsageError(message: "moec \(command) runs in one process; under mpirun only 'run' and 'bench' share the experts between the ranks", command: command)
            }
            return
        }
        guard let placement = options.placement else {
            if launch.size > 1 {
                throw UsageError(
                    message:
                        "mpirun started \(launch.size) processes, but without --placement each would run every expert; give --placement FILE.json (of \(launch.size) workers) or --placement static",
                    command: command)
            }
            return
        }
        if placement.workers != launch.size {
            throw DiagnosticError(
                .error(
                    "--placement: the placement has \(placement.workers) worker\(placement.workers == 1 ? "" : "s") but mpirun started \(launch.size) process\(launch.size == 1 ? "" : "es"); run it with 'mpirun -n \(placement.workers)'"
                ))
        }
        let world: MPIWorld
        do { world = try MPIWorld.initialize() } catch { throw DiagnosticError(.error("MPI: \(error.message)")) }
        self.world = world
        guard world.size == launch.size, world.rank == launch.rank else {
            abort(
                "MPI says rank \(world.rank) of \(world.size), but the environment says rank \(launch.rank) of \(launch.size) (is MOEC_MPI the library mpirun belongs to?)"
            )
        }
        options.world = world
        // A rank holds only its experts: LLEP moves pairs only between the ranks holding a replica.
        options.placement?.spillsToHoldersOnly = true
        options.threads = threads ?? max(1, ExecutionOptions.defaultThreads / launch.localSize)
    }

    /// Ends the process with `status`: under MPI, `MPI_Finalize` when it succeeded and
    /// `MPI_Abort` (ending every rank) when it failed.
    /// With `MOEC_PEAK_RSS=1` in the environment, first prints the process's peak resident
    /// memory to stderr (`[rank r] peak RSS: N KiB`), to check what a rank holds.
    static func exit(_ status: Int32) -> Never {
        if ProcessInfo.processInfo.environment["MOEC_PEAK_RSS"] == "1" {
            var usage = rusage()
            #if os(Linux)
                let who = __rusage_who_t(RUSAGE_SELF.rawValue), kib = 1
            #else
                let who = RUSAGE_SELF, kib = 1024 // ru_maxrss counts bytes on Darwin
            #endif
            if getrusage(who, &usage) == 0 { Console.err("peak RSS: \(Int(usage.ru_maxrss) / kib) KiB\n") }
        }
        if let world {
            if status != 0 { world.abort(status) }
            world.finalize()
        }
        Foundation.exit(status)
    }

    private static func abort(_ message: String) -> Never {
        Console.error(message)
        exit(1)
    }
}
