"""Which socket of a SO_REUSEPORT group gets a new connection: a classic BPF program attached to the group
(SO_ATTACH_REUSEPORT_CBPF) hashes the client's address and port over the sockets still in rotation, so the
master can take a slot's socket out of rotation, let its worker empty its queue, and only then close it.
(Closing a reuseport socket resets the connections queued on it unless net.ipv4.tcp_migrate_req is set.)

The program returns an index into the kernel's array of the group's sockets. Sockets are appended in the
order they start listening; when one closes, the last one moves into its place. GroupOrder mirrors that.
"""

from __future__ import annotations

import ctypes
import socket

SO_ATTACH_REUSEPORT_CBPF = 51
#: Most sockets one program can steer over (two instructions each; a classic program has at most 4096).
MAX_STEERED = 2000

# Classic BPF opcodes (linux/filter.h).
_LD_H_ABS, _LD_W_ABS, _ST, _LDX_MEM = 0x28, 0x20, 0x02, 0x61
_XOR_X, _MUL_K, _RSH_K, _MOD_K = 0xAC, 0x24, 0x74, 0x94
_JEQ_K, _RET_K = 0x15, 0x06
_NET_OFF = -0x100000  # SKF_NET_OFF: loads relative to the IP header


class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Instruction))]


def program(indices: list[int], family: int) -> list[tuple[int, int, int, int]]:
    """hash(source address, source port) mod len(indices), then a table from that to a socket index."""
    if not 0 < len(indices) <= MAX_STEERED:
        raise ValueError(f"can steer over 1 to {MAX_STEERED} sockets, not {len(indices)}")
    # Offsets past the IP header (no IPv4 options in a SYN; IPv6 without extension headers): the TCP
    # source port, and the (last) 32 bits of the source address.
    port_at, address_at = (40, 20) if family == socket.AF_INET6 else (20, 12)
    code = [
        (_LD_H_ABS, 0, 0, _NET_OFF + port_at),
        (_ST, 0, 0, 0),
        (_LD_W_ABS, 0, 0, _NET_OFF + address_at),
        (_LDX_MEM, 0, 0, 0),
        (_XOR_X, 0, 0, 0),
        (_MUL_K, 0, 0, 0x9E3779B1),  # spread ports that differ in low bits only (Linux steps them by 2)
        (_RSH_K, 0, 0, 16),
        (_MOD_K, 0, 0, len(indices)),
    ]
    for remainder, index in enumerate(indices[:-1]):
        code += [(_JEQ_K, 0, 1, remainder), (_RET_K, 0, 0, index)]
    code.append((_RET_K, 0, 0, indices[-1]))
    return [(op, jt, jf, k & 0xFFFFFFFF) for op, jt, jf, k in code]


def attach(sock: socket.socket, indices: list[int]) -> None:
    """Steer the group `sock` belongs to over the sockets at `indices`; raises OSError where unsupported."""
    code = program(indices, sock.family)
    instructions = (_Instruction * len(code))(*(_Instruction(*ins) for ins in code))
    prog = _Program(len(code), instructions)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(prog))


class GroupOrder:
    """The kernel's order of one reuseport group's sockets, by slot."""

    def __init__(self) -> None:
        self.slots: list[int] = []

    def added(self, slot: int) -> None:
        self.slots.append(slot)

    def removed(self, slot: int) -> None:
        position = self.slots.index(slot)
        self.slots[position] = self.slots[-1]
        self.slots.pop()

    def indices(self, active: set[int]) -> list[int]:
        return [index for index, slot in enumerate(self.slots) if slot in active]


def accept_queue_length(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue (tcp_info.tcpi_unacked for a listener)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    return int.from_bytes(info[24:28], "little") if len(info) >= 28 else 0
