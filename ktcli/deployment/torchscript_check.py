"""Refuse a TorchScript file that could do more than compute on tensors.

TorchScript runs no Python, but its operators reach beyond tensors: ``aten::from_file``
maps any file into a tensor (and writes it back through an in-place operation),
``aten::save`` writes one, ``prim::Print`` writes to the console. A ``.pt`` file that
someone else wrote is therefore checked before kt runs it:

1. before loading, no class in its code may define ``__setstate__``, the one method
   ``torch.jit.load`` itself runs (when it rebuilds the module's objects);
2. after loading, every node of every method of every submodule (blocks of ``if`` and
   loops included) must be an operator in :data:`ALLOWED`, and a method call must call a
   method of one of those submodules (so that it is checked too).

:data:`ALLOWED` holds what kt's own exports contain for every backbone it ships
(``tools/torchscript_operators.py`` traces them and prints the list) plus a reviewed set of
pure tensor operators; the operators that touch files, serialise, print, wait or run
threads are refused by name (:data:`REFUSED`). ONNX is the format to exchange: ONNX Runtime
has no operator that reaches the file system at all.
"""
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator, Set

from ..errors import UserError

# Named in the refusal: what these operators would do.
REFUSED = {
    'aten::from_file': 'maps a file into a tensor (reading it, and writing it back in place)',
    'aten::save': 'writes a file', 'debugprims::load_tensor': 'reads a file',
    'prim::Print': 'prints', 'aten::_print': 'prints', 'aten::warn': 'prints warnings',
    'aten::set_': 'swaps the memory behind a tensor', 'aten::set_data': 'swaps tensor data',
    'aten::wait': 'waits on threads', 'prim::fork': 'starts threads',
    'prim::rpc_async': 'calls other processes', 'prim::rpc_sync': 'calls other processes',
    'prim::rpc_remote': 'calls other processes', 'aten::manual_seed': 'reseeds the process',
    'prim::CallFunction': 'calls a function outside the checked modules',
    'prim::CreateObject': 'creates TorchScript objects whose methods are not checked',
    'prim::SetAttr': 'changes the module while it runs',
}

# Operators of kt's exports (tools/torchscript_operators.py) and reviewed pure tensor ones.
ALLOWED = frozenset('''
    aten::__getitem__ aten::_convolution aten::abs aten::adaptive_avg_pool2d
    aten::adaptive_max_pool2d aten::add aten::add_ aten::addmm aten::amax aten::avg_pool2d
    aten::batch_norm aten::cat aten::ceil aten::chunk aten::clamp aten::clamp_ aten::clamp_max
    aten::clamp_min aten::clone aten::constant_pad_nd aten::contiguous aten::conv2d aten::detach
    aten::dim aten::div aten::div_ aten::dropout aten::elu aten::elu_ aten::eq aten::exp
    aten::expand aten::expand_as aten::flatten aten::Float aten::floor aten::floor_divide
    aten::gelu aten::gt aten::hardsigmoid aten::hardsigmoid_ aten::hardswish aten::hardswish_
    aten::hardtanh aten::hardtanh_ aten::Int aten::layer_norm aten::leaky_relu aten::leaky_relu_
    aten::linear aten::log_softmax aten::lt aten::matmul aten::max aten::max_pool2d
    aten::maximum aten::mean aten::min aten::minimum aten::mm aten::mul aten::mul_ aten::neg
    aten::ones_like aten::pad aten::permute aten::pow aten::relu aten::relu6 aten::relu_
    aten::reshape aten::rsqrt aten::ScalarImplicit aten::select aten::sigmoid aten::sigmoid_
    aten::silu aten::silu_ aten::size aten::slice aten::softmax aten::split aten::sqrt
    aten::squeeze aten::stack aten::std aten::sub aten::sub_ aten::sum aten::tanh aten::to
    aten::transpose aten::type_as aten::unsqueeze aten::upsample_bilinear2d aten::var aten::view
    aten::where aten::zeros_like prim::CallMethod prim::Constant prim::device prim::dtype
    prim::GetAttr prim::ListConstruct prim::ListUnpack prim::NumToTensor prim::TupleConstruct
    prim::TupleUnpack
'''.split())

_SETSTATE = re.compile(rb'\bdef\s+__setstate__\b')


class UnsafeTorchScriptError(UserError):
    """A TorchScript file with code that is not plain tensor computation."""


def check_archive(path: Path) -> None:
    """Refuse a TorchScript archive whose code defines ``__setstate__`` (run on load).

    Raises:
        UnsafeTorchScriptError: It does, or it is not a TorchScript archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            code = [name for name in archive.namelist()
                    if '/code/' in name and name.endswith('.py')]
            for name in code:
                if _SETSTATE.search(archive.read(name)):
                    raise UnsafeTorchScriptError(
                        f'{path} defines __setstate__ ({name}), code that torch.jit.load '
                        'runs; kt runs only TorchScript that computes on tensors: export the '
                        'model again with `kt export`, or exchange ONNX')
    except (zipfile.BadZipFile, OSError) as error:
        raise UnsafeTorchScriptError(f'{path} is not a TorchScript archive ({error})') from None
    if not code:
        raise UnsafeTorchScriptError(f'{path} holds no TorchScript code; it was not written by '
                                     '`kt export`')


def check_module(module: Any, path: Path) -> None:
    """Refuse a loaded module with an operator outside :data:`ALLOWED`.

    Raises:
        UnsafeTorchScriptError: Naming the first such operator and its method.
    """
    modules = {sub._c._type().qualified_name() for _, sub in module.named_modules()}
    for where, node in _nodes(module):
        kind = node.kind()
        if kind in REFUSED or kind not in ALLOWED:
            what = REFUSED.get(kind, 'is not a tensor operator kt allows')
            raise UnsafeTorchScriptError(
                f'{path} calls {kind} in {where}, which {what}; kt runs only TorchScript '
                'that computes on tensors: export the model again with `kt export`, or '
                'exchange ONNX')
        if kind == 'prim::CallMethod' and node.inputsAt(0).type().qualified_name() not in modules:
            raise UnsafeTorchScriptError(
                f'{path} calls a method of {node.inputsAt(0).type().qualified_name()} in '
                f'{where}, which is not one of its modules; kt runs only TorchScript that '
                'computes on tensors: export the model again with `kt export`, or exchange ONNX')


def graph_operators(module: Any) -> Set[str]:
    """The operators of every method of ``module`` and its submodules."""
    return {node.kind() for _, node in _nodes(module)}


def _nodes(module: Any) -> Iterator[tuple]:
    """(``module.method``, node) of every node of every method, blocks included."""
    for name, sub in module.named_modules():
        for method in sub._c._method_names():
            yield from _block_nodes(sub._c._get_method(method).graph,
                                    f'{name or "the model"}.{method}')


def _block_nodes(block: Any, where: str) -> Iterator[tuple]:
    for node in block.nodes():
        yield where, node
        for inner in node.blocks():
            yield from _block_nodes(inner, where)
