"""A small CRI client (k8s.io/cri-api runtime.v1) over grpcio, for the tests and the
benchmark: the few messages we use, written from the API's field numbers, and a proto3
wire encoder/decoder of our own for them (no generated code).

A message is a Python dict; its schema maps each field name to (number, kind), where
kind is a scalar name ("string", "bytes", "bool", "int64", "int32", "uint32", "enum"),
another schema (a nested message), ("repeated", kind) or ("map", value_kind) with string
keys. Fields the schema does not name are skipped when decoding, as protobuf does."""
import struct

import grpc

# --- the proto3 wire format -------------------------------------------------------------

VARINT, I64, LEN, I32 = 0, 1, 2, 5


def _varint(n):
    n &= (1 << 64) - 1              # negative int64/int32 go as 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number, wire):
    return _varint(number << 3 | wire)


def _scalar(number, kind, value):
    if kind in ("string", "bytes"):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return _key(number, LEN) + _varint(len(data)) + data
    if kind in ("bool", "int64", "int32", "uint32", "enum"):
        return _key(number, VARINT) + _varint(int(value))
    return _key(number, LEN) + _with_length(encode(kind, value))   # a message


def _with_length(data):
    return _varint(len(data)) + data


def encode(schema, msg):
    """The wire bytes of dict `msg` under `schema`; unknown names are an error."""
    out = bytearray()
    for name, value in msg.items():
        if name not in schema:
            raise KeyError(f"no field {name!r} in this message (has {sorted(schema)})")
        number, kind = schema[name]
        if isinstance(kind, tuple) and kind[0] == "repeated":
            for item in value:
                out += _scalar(number, kind[1], item)
        elif isinstance(kind, tuple) and kind[0] == "map":
            entry = {"key": (1, "string"), "value": (2, kind[1])}
            for k, v in value.items():
                out += _key(number, LEN) + _with_length(encode(entry, {"key": k, "value": v}))
        else:
            out += _scalar(number, kind, value)
    return bytes(out)


def _read_varint(data, pos):
    n = shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def _convert(kind, raw):
    if kind == "string":
        return bytes(raw).decode()
    if kind == "bytes":
        return bytes(raw)
    if kind == "bool":
        return bool(raw)
    if kind in ("int64", "int32"):
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind in ("uint32", "enum"):
        return raw
    return decode(kind, raw)        # a message


def decode(schema, data):
    """The dict of wire bytes `data` under `schema`: proto3 defaults for absent scalars
    are left out (read them with .get(name, default))."""
    by_number = {number: (name, kind) for name, (number, kind) in schema.items()}
    msg = {}
    pos = 0
    data = memoryview(data)
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            raw, pos = _read_varint(data, pos)
        elif wire == LEN:
            size, pos = _read_varint(data, pos)
            raw, pos = data[pos:pos + size], pos + size
        elif wire == I64:
            raw, pos = struct.unpack_from("<q", data, pos)[0], pos + 8
        elif wire == I32:
            raw, pos = struct.unpack_from("<i", data, pos)[0], pos + 4
        else:
            raise ValueError(f"wire type {wire} of field {number} is not proto3")
        if number not in by_number:
            continue
        name, kind = by_number[number]
        if isinstance(kind, tuple) and kind[0] == "repeated":
            item = kind[1]
            if wire == LEN and not isinstance(item, dict) and item not in ("string", "bytes"):
                values, p = [], 0           # a packed repeated scalar
                while p < len(raw):
                    v, p = _read_varint(raw, p)
                    values.append(_convert(item, v))
                msg.setdefault(name, []).extend(values)
            else:
                msg.setdefault(name, []).append(_convert(item, raw))
        elif isinstance(kind, tuple) and kind[0] == "map":
            entry = decode({"key": (1, "string"), "value": (2, kind[1])}, raw)
            msg.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        else:
            msg[name] = _convert(kind, raw)
    return msg


# --- runtime.v1 messages (k8s.io/cri-api api.proto field numbers) ------------------------

EMPTY = {}
NAMESPACE_MODE = {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3}
CONTAINER_STATE = {0: "CREATED", 1: "RUNNING", 2: "EXITED", 3: "UNKNOWN"}
SANDBOX_STATE = {0: "READY", 1: "NOTREADY"}

KeyValue = {"key": (1, "string"), "value": (2, "string")}
ImageSpec = {"image": (1, "string"), "annotations": (2, ("map", "string"))}
Int64Value = {"value": (1, "int64")}
NamespaceOption = {"network": (1, "enum"), "pid": (2, "enum"), "ipc": (3, "enum"),
                   "target_id": (4, "string")}
Mount = {"container_path": (1, "string"), "host_path": (2, "string"),
         "readonly": (3, "bool"), "propagation": (5, "enum")}
DNSConfig = {"servers": (1, ("repeated", "string")), "searches": (2, ("repeated", "string")),
             "options": (3, ("repeated", "string"))}
PodSandboxMetadata = {"name": (1, "string"), "uid": (2, "string"), "namespace": (3, "string"),
                      "attempt": (4, "uint32")}
LinuxSandboxSecurityContext = {"namespace_options": (1, NamespaceOption),
                               "run_as_user": (3, Int64Value), "readonly_rootfs": (4, "bool"),
                               "privileged": (6, "bool")}
LinuxPodSandboxConfig = {"cgroup_parent": (1, "string"),
                         "security_context": (2, LinuxSandboxSecurityContext),
                         "sysctls": (3, ("map", "string"))}
PodSandboxConfig = {"metadata": (1, PodSandboxMetadata), "hostname": (2, "string"),
                    "log_directory": (3, "string"), "dns_config": (4, DNSConfig),
                    "labels": (6, ("map", "string")), "annotations": (7, ("map", "string")),
                    "linux": (8, LinuxPodSandboxConfig)}
ContainerMetadata = {"name": (1, "string"), "attempt": (2, "uint32")}
LinuxContainerSecurityContext = {"privileged": (2, "bool"),
                                 "namespace_options": (3, NamespaceOption),
                                 "run_as_user": (5, Int64Value),
                                 "readonly_rootfs": (7, "bool"), "no_new_privs": (11, "bool")}
LinuxContainerConfig = {"security_context": (2, LinuxContainerSecurityContext)}
ContainerConfig = {"metadata": (1, ContainerMetadata), "image": (2, ImageSpec),
                   "command": (3, ("repeated", "string")), "args": (4, ("repeated", "string")),
                   "working_dir": (5, "string"), "envs": (6, ("repeated", KeyValue)),
                   "mounts": (7, ("repeated", Mount)), "labels": (9, ("map", "string")),
                   "annotations": (10, ("map", "string")), "log_path": (11, "string"),
                   "stdin": (12, "bool"), "tty": (14, "bool"),
                   "linux": (15, LinuxContainerConfig)}
ContainerStatus = {"id": (1, "string"), "metadata": (2, ContainerMetadata),
                   "state": (3, "enum"), "created_at": (4, "int64"),
                   "started_at": (5, "int64"), "finished_at": (6, "int64"),
                   "exit_code": (7, "int32"), "image": (8, ImageSpec),
                   "reason": (10, "string"), "message": (11, "string"),
                   "log_path": (15, "string")}
PodSandboxStatus = {"id": (1, "string"), "metadata": (2, PodSandboxMetadata),
                    "state": (3, "enum"), "created_at": (4, "int64"),
                    "runtime_handler": (9, "string")}

# method name -> (request schema, response schema)
RUNTIME_METHODS = {
    "Version": ({"version": (1, "string")},
                {"version": (1, "string"), "runtime_name": (2, "string"),
                 "runtime_version": (3, "string"), "runtime_api_version": (4, "string")}),
    "RunPodSandbox": ({"config": (1, PodSandboxConfig), "runtime_handler": (2, "string")},
                      {"pod_sandbox_id": (1, "string")}),
    "PodSandboxStatus": ({"pod_sandbox_id": (1, "string"), "verbose": (2, "bool")},
                         {"status": (1, PodSandboxStatus), "info": (2, ("map", "string"))}),
    "StopPodSandbox": ({"pod_sandbox_id": (1, "string")}, EMPTY),
    "RemovePodSandbox": ({"pod_sandbox_id": (1, "string")}, EMPTY),
    "CreateContainer": ({"pod_sandbox_id": (1, "string"), "config": (2, ContainerConfig),
                         "sandbox_config": (3, PodSandboxConfig)},
                        {"container_id": (1, "string")}),
    "StartContainer": ({"container_id": (1, "string")}, EMPTY),
    "StopContainer": ({"container_id": (1, "string"), "timeout": (2, "int64")}, EMPTY),
    "RemoveContainer": ({"container_id": (1, "string")}, EMPTY),
    "ContainerStatus": ({"container_id": (1, "string"), "verbose": (2, "bool")},
                        {"status": (1, ContainerStatus), "info": (2, ("map", "string"))}),
    "ExecSync": ({"container_id": (1, "string"), "cmd": (2, ("repeated", "string")),
                  "timeout": (3, "int64")},
                 {"stdout": (1, "bytes"), "stderr": (2, "bytes"), "exit_code": (3, "int32")}),
}


class CRIClient:
    """runtime.v1.RuntimeService over a unix socket. Each method takes the request's
    fields as keyword arguments (dicts for messages) and returns the response dict;
    a CRI error raises grpc.RpcError (its .details() is containerd's message)."""

    def __init__(self, socket_path, timeout=120):
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self.timeout = timeout
        self._calls = {
            name: self.channel.unary_unary(
                f"/runtime.v1.RuntimeService/{name}",
                request_serializer=lambda msg, s=req: encode(s, msg),
                response_deserializer=lambda data, s=resp: decode(s, data))
            for name, (req, resp) in RUNTIME_METHODS.items()}

    def __getattr__(self, name):
        call = self.__dict__.get("_calls", {}).get(name)
        if call is None:
            raise AttributeError(name)
        return lambda timeout=None, **request: call(request, timeout=timeout or self.timeout)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
