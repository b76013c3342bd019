//! Hardware models and boards for Vessel: the i440FX + PIIX3 PC (`pc`), one device per module.
