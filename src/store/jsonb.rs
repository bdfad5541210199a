//! `jsonb` built straight from serde values, for answers and statement arguments. pgrx's `JsonB`
//! prints a value to text and has `jsonb_in` parse it again: on the hot paths that round trip was
//! the largest cost of the Rust layer after the statements themselves.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Datum, FromDatum};
use pgrx::nullable::Nullable;
use pgrx::pg_sys::{self, JsonbIteratorToken as Token};
use pgrx::{direct_function_call, IntoDatum};
use serde_json::Value;
use std::ptr;

/// A JSON value on its way into PostgreSQL as `jsonb`: a public function's answer, or an argument
/// of a statement (an audit event's details, a proven factor).
#[derive(Debug)]
pub struct Jsonb(pub Value);

pgrx::impl_sql_translatable!(Jsonb, "jsonb");

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        match &self.0 {
            Value::Object(_) | Value::Array(_) => Some(container_to_jsonb(&self.0)),
            // A bare scalar needs jsonb's raw-scalar wrapping; no answer is one.
            _ => pgrx::JsonB(self.0).into_datum(),
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

/// A `jsonb` argument as serde reads it, or why serde cannot (a value nested more than 128
/// levels deep, a number out of range): pgrx's `JsonB` raises an internal error (XX000) for
/// those, which are the caller's mistakes. The flow decides what to answer.
#[derive(Debug)]
pub struct JsonbArgument(pub Result<Value, String>);

pgrx::impl_sql_translatable!(JsonbArgument, "jsonb");

impl FromDatum for JsonbArgument {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<JsonbArgument> {
        if is_null {
            return None;
        }
        // SAFETY: the datum is a jsonb (the argument's type); jsonb_out detoasts it and returns
        // a palloc'd C string, freed once read.
        unsafe {
            let text = direct_function_call::<&std::ffi::CStr>(pg_sys::jsonb_out, &[Some(datum)])?;
            let value = match text.to_str() {
                Ok(text) => serde_json::from_str(text).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            pg_sys::pfree(text.as_ptr() as *mut std::ffi::c_void);
            Some(JsonbArgument(value))
        }
    }
}

// SAFETY: as pgrx's own types that unbox through `FromDatum`.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArgument {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe {
            arg.unbox_arg_using_from_datum()
                .unwrap_or_else(|| panic!("argument {index} must not be null"))
        }
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum().into() }
    }
}

/// Builds the jsonb of an object or array in the current memory context.
fn container_to_jsonb(value: &Value) -> pg_sys::Datum {
    let mut state: *mut pg_sys::JsonbParseState = ptr::null_mut();
    // SAFETY: `push` hands pushJsonbValue values whose strings point into `value`, which outlives
    // the build; JsonbValueToJsonb copies everything into the result.
    unsafe {
        let root = push(&mut state, value, Token::WJB_ELEM);
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(root))
    }
}

/// Pushes `value`; a scalar is pushed as `scalar_token` (a key's value or an array element).
/// Returns what the last push returned: the finished root when it closes the outermost container.
unsafe fn push(
    state: &mut *mut pg_sys::JsonbParseState,
    value: &Value,
    scalar_token: Token::Type,
) -> *mut pg_sys::JsonbValue {
    unsafe {
        match value {
            Value::Object(map) => {
                pg_sys::pushJsonbValue(state, Token::WJB_BEGIN_OBJECT, ptr::null_mut());
                for (key, item) in map {
                    let mut key = string(key);
                    pg_sys::pushJsonbValue(state, Token::WJB_KEY, &mut key);
                    push(state, item, Token::WJB_VALUE);
                }
                pg_sys::pushJsonbValue(state, Token::WJB_END_OBJECT, ptr::null_mut())
            }
            Value::Array(items) => {
                pg_sys::pushJsonbValue(state, Token::WJB_BEGIN_ARRAY, ptr::null_mut());
                for item in items {
                    push(state, item, Token::WJB_ELEM);
                }
                pg_sys::pushJsonbValue(state, Token::WJB_END_ARRAY, ptr::null_mut())
            }
            scalar => {
                let mut scalar = scalar_value(scalar);
                pg_sys::pushJsonbValue(state, scalar_token, &mut scalar)
            }
        }
    }
}

fn string(s: &str) -> pg_sys::JsonbValue {
    let mut v = empty(pg_sys::jbvType::jbvString);
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: s.len() as i32,
        val: s.as_ptr() as *mut std::ffi::c_char,
    };
    v
}

fn empty(kind: pg_sys::jbvType::Type) -> pg_sys::JsonbValue {
    // SAFETY: JsonbValue is plain data; every field read is set by the caller for its kind.
    let mut v: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    v.type_ = kind;
    v
}

fn scalar_value(value: &Value) -> pg_sys::JsonbValue {
    match value {
        Value::Null => empty(pg_sys::jbvType::jbvNull),
        Value::Bool(b) => {
            let mut v = empty(pg_sys::jbvType::jbvBool);
            v.val.boolean = *b;
            v
        }
        Value::Number(n) => {
            let mut v = empty(pg_sys::jbvType::jbvNumeric);
            v.val.numeric = match n.as_i64() {
                // SAFETY: plain conversions into a palloc'd numeric.
                Some(i) => unsafe { pg_sys::int64_to_numeric(i) },
                None => {
                    let f = n.as_f64().unwrap_or_default();
                    let datum: pg_sys::Datum =
                        unsafe { direct_function_call(pg_sys::float8_numeric, &[f.into_datum()]) }
                            .expect("float8_numeric returns a value");
                    datum.cast_mut_ptr()
                }
            };
            v
        }
        Value::String(s) => string(s),
        Value::Array(_) | Value::Object(_) => unreachable!("containers are pushed, not scalars"),
    }
}
