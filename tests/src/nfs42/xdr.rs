//! XDR (RFC 4506): an encoder into a byte vector and a bounds-checked decoder. Every decode
//! error is a message, never a panic: the bytes come from the network.

/// Builds XDR bytes.
#[derive(Debug, Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// An unsigned 32-bit integer.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// Fixed-length opaque data (padded to 4 bytes).
    pub fn fixed(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self.pad(b.len())
    }

    /// Variable-length opaque data or a string: its length, the bytes, padding.
    pub fn opaque(&mut self, b: &[u8]) -> &mut Self {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.fixed(b)
    }

    fn pad(&mut self, len: usize) -> &mut Self {
        let n = (4 - len % 4) % 4;
        self.0.extend_from_slice(&[0u8; 3][..n]);
        self
    }
}

/// Reads XDR bytes front to back.
#[derive(Debug)]
pub struct Dec<'a> {
    b: &'a [u8],
    at: usize,
}

/// A decode failure: what was being read and where.
pub type DecResult<T> = Result<T, String>;

impl<'a> Dec<'a> {
    /// A decoder over `b`.
    pub fn new(b: &'a [u8]) -> Dec<'a> {
        Dec { b, at: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> DecResult<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {n} bytes wanted at offset {} of {}",
                    self.at,
                    self.b.len()
                )
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> DecResult<u32> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self) -> DecResult<u64> {
        let hi = u64::from(self.u32()?);
        Ok(hi << 32 | u64::from(self.u32()?))
    }

    /// A boolean (0 or 1).
    pub fn bool(&mut self) -> DecResult<bool> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("boolean {v}")),
        }
    }

    /// Fixed-length opaque data of `n` bytes (and its padding).
    pub fn fixed(&mut self, n: usize) -> DecResult<&'a [u8]> {
        let s = self.take(n)?;
        self.take((4 - n % 4) % 4)?;
        Ok(s)
    }

    /// Variable-length opaque data of at most `max` bytes.
    pub fn opaque(&mut self, max: usize) -> DecResult<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(format!("opaque of {n} bytes, at most {max} expected"));
        }
        self.fixed(n)
    }

    /// A count of array elements, at most `max`.
    pub fn count(&mut self, max: u32) -> DecResult<u32> {
        let n = self.u32()?;
        if n > max {
            return Err(format!("array of {n} elements, at most {max} expected"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut e = Enc::default();
        e.u32(7)
            .u64(1 << 40)
            .bool(true)
            .opaque(b"abcde")
            .fixed(&[9; 3]);
        assert_eq!(e.0.len(), 4 + 8 + 4 + 4 + 8 + 4);
        let mut d = Dec::new(&e.0);
        assert_eq!(d.u32(), Ok(7));
        assert_eq!(d.u64(), Ok(1 << 40));
        assert_eq!(d.bool(), Ok(true));
        assert_eq!(d.opaque(16), Ok(&b"abcde"[..]));
        assert_eq!(d.fixed(3), Ok(&[9u8; 3][..]));
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn truncated_or_absurd_input_is_an_error() {
        assert!(Dec::new(&[0, 0]).u32().is_err());
        assert!(Dec::new(&[0, 0, 0, 9, 1]).opaque(100).is_err());
        assert!(Dec::new(&[0, 0, 1, 0]).opaque(16).is_err());
        assert!(Dec::new(&[0, 0, 0, 2]).bool().is_err());
        assert!(Dec::new(&[255, 255, 255, 255]).count(10).is_err());
    }
}
